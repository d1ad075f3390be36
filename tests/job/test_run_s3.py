"""The Ray Data job end to end with s3:// inputs, outputs, manifest and weights, against a
real S3 API (moto's server on loopback), directly and through a proxy that injects faults."""

import io

import cv2
import numpy as np
import pyarrow.compute as pc
import torch

import raysr.job.run as run_module
from factories import compact_state
from raysr.job import plan
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_rows, read_manifest
from raysr.sources import s3
from s3_fixtures import ACCESS_KEY, FAULT_KINDS, PLANTED_SECRET, s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401


def _png(pixels) -> bytes:
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", bgr)[1].tobytes()


def _upload_weights(bucket: str) -> str:
    buffer = io.BytesIO()
    torch.save({"params_ema": compact_state()}, buffer)
    uri = f"s3://{bucket}/weights/compact.pth"
    s3.write_bytes(uri, buffer.getvalue())
    return uri


def _spec(bucket: str, weights_uri: str, weights_dir, **extra):
    return parse_spec({"name": "s3-test", "inputs": [f"s3://{bucket}/in/"], "output": {"path": f"s3://{bucket}/out"},
                       "model": weights_uri, "weights_dir": str(weights_dir), "allow_errors": True,
                       "engine": {"precision": "fp32"}, **extra})


def _keys(bucket: str) -> list[str]:
    return [key for key, _ in s3.list_prefix(f"s3://{bucket}/")]


def _assert_no_credentials(bucket: str, table) -> None:
    """Neither the planted secret nor the access key in any manifest value, object or runtime_env."""
    for value in (v for column in table.columns for v in column.to_pylist()):
        assert PLANTED_SECRET not in str(value) and ACCESS_KEY not in str(value)
    for key in _keys(bucket):
        data = s3.read_bytes(f"s3://{bucket}/{key}")
        assert PLANTED_SECRET.encode() not in data and ACCESS_KEY.encode() not in data, key
    forwarded = plan._worker_env()["env_vars"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(forwarded)
    assert PLANTED_SECRET not in str(forwarded) and ACCESS_KEY not in str(forwarded)


def test_worker_env_forwards_store_settings_never_credentials(monkeypatch):
    for name in s3.WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    assert plan._worker_env() is None  # nothing set: the job's runtime_env is left alone
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.local:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    assert plan._worker_env() == {"env_vars": {"AWS_ENDPOINT_URL_S3": "http://minio.local:9000",
                                               "AWS_REGION": "eu-west-3"}}


def test_s3_job_end_to_end(ray_cluster, s3_bucket, photo, tmp_path, monkeypatch):
    bucket = s3_bucket
    inputs = {"in/photos/a.png": photo[:48, :64], "in/photos/b.png": photo[200:240, 300:330],
              "in/gray.png": cv2.cvtColor(photo[:32, :32], cv2.COLOR_RGB2GRAY), "in/ghost.png": photo[:20, :20],
              "in/../escape.png": photo[:24, :24], "in//abs.png": photo[:24, :24]}
    for key, pixels in inputs.items():
        s3.write_bytes(f"s3://{bucket}/{key}", _png(pixels))
    weights_uri = _upload_weights(bucket)
    spec = _spec(bucket, weights_uri, tmp_path / "weights", output={"path": f"s3://{bucket}/out", "report": True})

    def list_then_delete(job_spec):  # an object deleted between listing and reading
        listing = real_list_inputs(job_spec)
        s3.client().delete_object(Bucket=bucket, Key="in/ghost.png")
        return listing

    real_list_inputs = run_module.list_inputs
    monkeypatch.setattr(run_module, "list_inputs", list_then_delete)
    report = run_job(spec, progress=False)
    monkeypatch.setattr(run_module, "list_inputs", real_list_inputs)

    assert report.listed == 6 and not report.missing and report.manifest_uri == f"s3://{bucket}/out/_raysr/manifest"
    assert report.counts["ok"] + report.counts["flagged"] == 3 and report.counts["error"] == 3
    table = read_manifest(report.manifest_uri)
    rows = {row["input_uri"].removeprefix(f"s3://{bucket}/"): row for row in latest_rows(table).to_pylist()}
    assert rows["in/ghost.png"]["error_type"] == "missing" and "disappeared" in rows["in/ghost.png"]["error_message"]
    for key in ("in/../escape.png", "in//abs.png"):
        assert rows[key]["error_type"] == "UnsafePathError" and rows[key]["output_uri"] is None
    a = rows["in/photos/a.png"]
    assert a["output_uri"] == f"s3://{bucket}/out/photos/a.png" and (a["output_width"], a["output_height"]) == (256, 192)
    assert a["weights_source"] == f"s3:{weights_uri}" and a["model_arch"] == "Compact"
    for key in ("in/photos/a.png", "in/photos/b.png", "in/gray.png"):
        assert s3.size_of(rows[key]["output_uri"]) == rows[key]["output_size"] > 0
    gray = cv2.imdecode(np.frombuffer(s3.read_bytes(rows["in/gray.png"]["output_uri"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (128, 128)

    # Nothing written outside the output prefix: only inputs, weights and out/ exist.
    outputs = {key for key in _keys(bucket) if not key.startswith(("in/", "weights/"))}
    assert all(key.startswith("out/") for key in outputs), outputs
    assert {key for key in outputs if not key.startswith("out/_raysr/")} == {
        "out/photos/a.png", "out/photos/b.png", "out/gray.png"}
    _assert_no_credentials(bucket, table)

    assert f"out/_raysr/manifest/_outcomes/{report.run_id}.parquet" in outputs  # the next resume starts there
    assert report.report_uri == f"s3://{bucket}/out/_raysr/report.html"
    page = s3.read_bytes(report.report_uri).decode()
    assert "s3-test" in page and page.count('type="range"') == 3  # its samples read back from S3

    second = run_job(spec, progress=False)  # resume: the ghost is no longer listed
    assert second.listed == 5 and second.counts["skipped"] == 3 and second.counts["error"] == 2
    assert read_manifest(spec.manifest_uri).num_rows == 11
    assert {f"out/_raysr/manifest/_outcomes/{run.run_id}.parquet" for run in (report, second)} <= set(_keys(bucket))


def test_s3_job_through_faulty_store_loses_nothing(ray_cluster, s3_bucket, s3_proxy, photo, tmp_path):
    bucket = s3_bucket
    names = [f"in/set{index % 3}/img{index:02d}.png" for index in range(12)]
    for index, key in enumerate(names):
        s3.write_bytes(f"s3://{bucket}/{key}", _png(photo[index * 30: index * 30 + 40, 100:136]))
    weights_uri = _upload_weights(bucket)
    spec = _spec(bucket, weights_uri, tmp_path / "weights", resources={"actors_per_model": 2})

    # The driver's and the workers' (through the plan's runtime_env) requests all pass the proxy.
    with s3_proxy.faults_on(rate=0.15, seed=2024, max_faults=60) as proxy:
        first = run_job(spec, progress=False)
        second = run_job(spec, progress=False)
    print(f"\n{proxy.requests} requests, {proxy.total_faults} faults injected: {dict(proxy.faults)}; "
          f"runs took {first.wall_s:.1f} s and {second.wall_s:.1f} s")

    assert first.listed == 12 and not first.missing
    assert first.counts["ok"] + first.counts["flagged"] == 12, first.counts  # nothing lost
    assert second.counts["skipped"] == 12, second.counts  # the manifest read back through faults too
    # One request in every round(1 / 0.15) = 7 draws a fault. A truncation drawn for a reply with
    # nothing to cut (an error status, an empty body) is not counted and waits for the next GET,
    # which the run's order of requests can make several draws in a row: ask for half the rate,
    # and every kind.
    assert proxy.total_faults >= proxy.requests // 7 // 2 and set(+proxy.faults) == set(FAULT_KINDS)
    table = read_manifest(spec.manifest_uri)
    assert table.num_rows == 24
    for row in table.filter(pc.equal(table["run_id"], first.run_id)).to_pylist():
        assert row["status"] in ("ok", "flagged") and s3.size_of(row["output_uri"]) == row["output_size"]
    _assert_no_credentials(bucket, table)


def test_s3_video_in_and_out_segment_parallel(ray_cluster, s3_bucket, tmp_path):
    """A film on S3 → segments on both actors (node-local copies) → joined → uploaded; audio intact."""
    import hashlib

    import av

    from clips import write_clip

    bucket = s3_bucket
    clip = tmp_path / "film.mkv"
    write_clip(clip, frames=24, size=(40, 24), fps=24, gop=6, audio="aac")
    s3.write_bytes(f"s3://{bucket}/in/film.mkv", clip.read_bytes())
    spec = parse_spec({"name": "s3-video", "inputs": [f"s3://{bucket}/in/"], "output": {"path": f"s3://{bucket}/out"},
                       "model": "bicubic", "resources": {"actors_per_model": 2},
                       "video": {"codec": "ffv1", "segment_seconds": 0.25}})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 1, report
    table = read_manifest(spec.manifest_uri)
    film = latest_rows(table).to_pylist()[0]
    segment_rows = [row for row in table.to_pylist() if row["segment_index"] is not None]
    assert film["status"] == "ok" and film["segments"] == len(segment_rows) == 4 and film["frames_out"] == 24
    assert s3.size_of(f"s3://{bucket}/out/film.mkv") == film["output_size"] > 0
    assert not [key for key in _keys(bucket) if key.startswith("out/_raysr/segments/")], "segment store removed"

    written = tmp_path / "out.mkv"
    written.write_bytes(s3.read_bytes(f"s3://{bucket}/out/film.mkv"))

    def audio(path):
        with av.open(str(path)) as container:
            return [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(container.streams.audio[0]) if p.size]

    with av.open(str(written)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 96)
        assert sum(1 for _ in container.decode(stream)) == 24
    assert audio(written) == audio(clip)
    assert run_job(spec, progress=False).counts["skipped"] == 1
