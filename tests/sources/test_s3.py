"""raysr.sources.s3 against a real S3 API (moto's server on loopback), with and without injected faults."""

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysr.manifest import ManifestWriter, new_row, read_manifest
from raysr.sinks.write import UnsafePathError
from raysr.sources import s3
from raysr.storage import output_uri
from s3_fixtures import ACCESS_KEY, PLANTED_SECRET, FaultProxy, s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401


def _put(bucket: str, keys: list[str], body: bytes = b"x") -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.client().put_object(Bucket=bucket, Key=key, Body=body), keys))


# -- smoke, round trip --------------------------------------------------------

def test_split_uri():
    assert s3.split_uri("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    assert s3.split_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3:// URI"):
        s3.split_uri("/local/path")
    with pytest.raises(ValueError, match="names no bucket"):
        s3.split_uri("s3:///key")


def test_write_read_size_round_trip(s3_bucket):
    uri = f"s3://{s3_bucket}/out/a b/img.png"
    assert s3.write_bytes(uri, b"\x89PNG" * 1000) == 4000
    assert s3.read_bytes(uri) == b"\x89PNG" * 1000
    assert s3.size_of(uri) == 4000
    assert s3.size_of(f"s3://{s3_bucket}/out/nothing.png") is None


def test_large_outputs_use_multipart_upload(s3_bucket, monkeypatch):
    assert s3._transfer_config().multipart_threshold == s3.MULTIPART_THRESHOLD
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)  # S3's smallest part
    monkeypatch.setattr(s3, "MULTIPART_CHUNKSIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (11 * 1024 * 1024 // 256)
    uri = f"s3://{s3_bucket}/big.tif"
    assert s3.write_bytes(uri, data) == len(data)
    head = s3.client().head_object(Bucket=s3_bucket, Key="big.tif")
    assert head["ETag"].strip('"').endswith("-3"), "a multipart object's ETag ends with -<parts>"
    assert s3.read_bytes(uri) == data


def test_download_file(s3_bucket, tmp_path):
    s3.write_bytes(f"s3://{s3_bucket}/weights/w.pth", b"weights")
    s3.download_file(f"s3://{s3_bucket}/weights/w.pth", tmp_path / "w.pth")
    assert (tmp_path / "w.pth").read_bytes() == b"weights"
    with pytest.raises(FileNotFoundError, match="w2.pth"):
        s3.download_file(f"s3://{s3_bucket}/weights/w2.pth", tmp_path / "w2.pth")


# -- exceptions ---------------------------------------------------------------

def test_missing_object_or_bucket_is_file_not_found(s3_bucket):
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/gone.png: GET failed: NoSuchKey"):
        s3.read_bytes(f"s3://{s3_bucket}/gone.png")
    with pytest.raises(FileNotFoundError, match="NoSuchBucket"):
        s3.read_bytes("s3://raysr-no-such-bucket/a.png")
    with pytest.raises(FileNotFoundError, match="NoSuchBucket"):
        list(s3.list_items("s3://raysr-no-such-bucket/in/", (".png",)))


def test_error_messages_hold_no_credentials(s3_bucket, monkeypatch):
    presigned = (f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F"
                 "20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0123abcd&X-Amz-Security-Token=tok123")
    text = s3.redact(f"failed: {presigned} AKIAIOSFODNN7EXAMPLE {PLANTED_SECRET} Signature=abc&AWSAccessKeyId=AKID")
    for leaked in (ACCESS_KEY, PLANTED_SECRET, "0123abcd", "tok123", "AKIAIOSFODNN7EXAMPLE", "Signature=abc", "AKID"):
        assert leaked not in text

    messages = []
    for call in (lambda: s3.read_bytes(f"s3://{s3_bucket}/gone.png"), lambda: s3.read_bytes("s3://raysr-nope/a")):
        with pytest.raises(OSError) as caught:
            call()
        messages.append(str(caught.value))
    # A request that fails every retry (MAX_ATTEMPTS lowered so it fails fast).
    monkeypatch.setattr(s3, "MAX_ATTEMPTS", 2)  # a new endpoint, so a new client that has it
    with FaultProxy(s3.endpoint_url(), rate=1.0, max_faults=10, kinds=("500",)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(s3.S3Error, match="InternalError") as caught:
            s3.write_bytes(f"s3://{s3_bucket}/x.png", b"data")
        messages.append(str(caught.value))
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    for message in messages:
        assert ACCESS_KEY not in message and PLANTED_SECRET not in message and "X-Amz-" not in message
        assert "s3://" in message


def test_addressing_style_is_checked(monkeypatch):
    monkeypatch.setenv("RAYSR_S3_ADDRESSING_STYLE", "sideways")
    with pytest.raises(ValueError, match="RAYSR_S3_ADDRESSING_STYLE must be one of"):
        s3.addressing_style()


# -- listing ------------------------------------------------------------------

def test_listing_is_paginated_and_streamed(s3_bucket):
    keys = [f"many/{index:05d}.png" for index in range(1005)]
    _put(s3_bucket, keys)
    calls = []
    handler = lambda **kwargs: calls.append(1)  # noqa: E731
    s3.client().meta.events.register("after-call.s3.ListObjectsV2", handler)
    try:
        listing = s3.list_prefix(f"s3://{s3_bucket}/many/")
        assert next(listing) == ("many/00000.png", 1) and len(calls) == 1  # one page fetched so far
        assert [key for key, _ in listing] == keys[1:] and len(calls) == 2  # S3 pages hold at most 1000 keys
        calls.clear()
        assert len(list(s3.list_items(f"s3://{s3_bucket}/many", (".png",), page_size=250))) == 1005
        assert len(calls) == 5
    finally:
        s3.client().meta.events.unregister("after-call.s3.ListObjectsV2", handler)


def test_list_items_mirrors_local_rules(s3_bucket):
    _put(s3_bucket, ["in/a.PNG", "in/sub/b.jpg", "in/notes.txt", "in/folder/", "inbox/c.png", "in/single.tif"])
    items = list(s3.list_items(f"s3://{s3_bucket}/in", (".png", ".jpg")))
    assert [(item.uri, item.relative, item.size) for item in items] == [
        (f"s3://{s3_bucket}/in/a.PNG", "a.PNG", 1), (f"s3://{s3_bucket}/in/sub/b.jpg", "sub/b.jpg", 1)]
    assert list(s3.list_items(f"s3://{s3_bucket}/in/", (".png", ".jpg"))) == items
    single = list(s3.list_items(f"s3://{s3_bucket}/in/single.tif", (".png",)))  # named explicitly
    assert [(item.relative, item.size) for item in single] == [("single.tif", 1)]
    with pytest.raises(FileNotFoundError, match="holds no object with one of the extensions"):
        list(s3.list_items(f"s3://{s3_bucket}/empty/", (".png",)))


def test_unsafe_keys_are_listed_then_refused_as_outputs(s3_bucket):
    _put(s3_bucket, ["in/../escape.png", "in//abs.png", "in/./dot.png", "in/ok.png"])
    relatives = {item.relative for item in s3.list_items(f"s3://{s3_bucket}/in/", (".png",))}
    assert relatives == {"../escape.png", "/abs.png", "./dot.png", "ok.png"}
    for relative in relatives - {"ok.png"}:
        with pytest.raises(UnsafePathError):
            output_uri(f"s3://{s3_bucket}/out", relative, ".png")
    assert output_uri(f"s3://{s3_bucket}/out/", "ok.png", ".png") == f"s3://{s3_bucket}/out/ok.png"


# -- retries, through a faulty proxy -------------------------------------------

@pytest.mark.parametrize("kind", ["500", "503", "slowdown", "reset", "truncate"])
def test_throttling_server_errors_and_resets_are_retried(s3_bucket, s3_proxy, kind):
    data = bytes(range(256)) * 64
    with s3_proxy.faults_on(rate=1.0, seed=1, max_faults=2, kinds=(kind,)) as proxy:
        uri = f"s3://{s3_bucket}/retry/{kind}.png"
        assert s3.write_bytes(uri, data) == len(data)
        assert s3.read_bytes(uri) == data
        assert s3.size_of(uri) == len(data)
    assert proxy.faults[kind] == 2, "every fault was injected and survived"


def test_arrow_filesystem_follows_the_s3_endpoint(s3_bucket, monkeypatch):
    """pyarrow (the manifest's filesystem) takes the same endpoint, S3-specific first."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url())
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # would fail: nothing listens there
    filesystem, path = s3.arrow_filesystem(f"s3://{s3_bucket}/m/t.parquet")
    assert path == f"{s3_bucket}/m/t.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path, filesystem=filesystem)
    assert s3.size_of(f"s3://{s3_bucket}/m/t.parquet") > 0
    assert pq.read_table(path, filesystem=filesystem).column("a").to_pylist() == [1, 2]


def test_manifest_round_trip_through_faults(s3_bucket, s3_proxy):
    """The manifest's Parquet parts are written and read back through 5xx, SlowDown, resets and cut bodies."""
    uri = f"s3://{s3_bucket}/out/_raysr/manifest"
    with s3_proxy.faults_on(rate=0.5, seed=3, max_faults=6) as proxy:
        writer = ManifestWriter(uri, job_id="job", run_id="r1")
        writer.append([new_row(item_id=str(index), status="ok") for index in range(50)])
        writer.flush()
        table = read_manifest(uri)
    assert table.num_rows == 50 and set(table.column("run_id").to_pylist()) == {"r1"}
    assert proxy.total_faults >= 4
    assert [key for key, _ in s3.list_prefix(f"s3://{s3_bucket}/")] == [
        key for key, _ in s3.list_prefix(f"{uri}/run_id=r1/")], "one part file, no folder markers"


@pytest.mark.parametrize("kind", ["truncate", "reset"])
def test_manifest_read_survives_cut_and_reset_replies(s3_bucket, s3_proxy, kind):
    """Reading a manifest (pyarrow's S3 filesystem, raysr's retry policy) rides out a body cut
    mid-transfer and a connection reset on its first requests."""
    uri = f"s3://{s3_bucket}/{kind}/_raysr/manifest"
    writer = ManifestWriter(uri, job_id="job", run_id="r1")
    writer.append([new_row(item_id=str(index), status="ok") for index in range(20)])
    writer.flush()
    with s3_proxy.faults_on(rate=1.0, seed=5, max_faults=3, kinds=(kind,)) as proxy:
        table = read_manifest(uri)
    assert table.num_rows == 20 and proxy.faults[kind] >= 1
