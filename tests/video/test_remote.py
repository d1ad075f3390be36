from raysr.sources import s3
from raysr.video.remote import local_path
from s3_fixtures import s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401


def test_local_files_are_used_in_place(tmp_path):
    path = tmp_path / "a.mp4"
    assert local_path(str(path)) == path


def test_s3_objects_are_copied_once_per_version_and_the_cache_stays_bounded(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYSR_VIDEO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RAYSR_VIDEO_CACHE_GB", str(2.5e-6))  # 2500 bytes: room for two 1000-byte copies
    uris = [f"s3://{s3_bucket}/in/{name}.mp4" for name in "abc"]
    for index, uri in enumerate(uris):
        s3.write_bytes(uri, bytes([index]) * 1000)

    first = local_path(uris[0], "etag=1")
    assert first.read_bytes() == bytes([0]) * 1000 and first.suffix == ".mp4"
    assert local_path(uris[0], "etag=1") == first  # no second download
    assert local_path(uris[0], "etag=2") != first  # new content, new copy
    local_path(uris[1], "etag=1")
    local_path(uris[2], "etag=1")
    copies = [path for path in (tmp_path / "cache").iterdir() if path.suffix == ".mp4"]
    assert len(copies) == 2 and sum(path.stat().st_size for path in copies) <= 2500
    assert not first.exists(), "the least recently used copy went first"
