"""Videos in a job: frames through the route's actor pool, audio copied bit for bit, resumable."""

import hashlib

import av
import cv2
import numpy as np

from clips import write_clip
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_rows, read_manifest


def _audio_hashes(path) -> list[str]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [hashlib.sha256(bytes(packet)).hexdigest() for packet in container.demux(stream) if packet.size]


def test_videos_and_images_in_one_job(ray_cluster, tmp_path, photo):
    root = tmp_path / "in"
    root.mkdir()
    write_clip(root / "film.mp4", frames=36, size=(48, 32), fps=24, gop=12, audio="aac")
    cv2.imwrite(str(root / "still.png"), photo[:40, :40])
    (root / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    spec = parse_spec({"name": "video", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": "bicubic", "allow_errors": True,
                       "video": {"codec": "libx264", "crf": 18, "preset": "ultrafast", "segment_seconds": 0.5}})
    report = run_job(spec, progress=False)
    assert report.counts["error"] == 1 and report.counts["ok"] + report.counts["flagged"] == 2
    rows = {row["input_uri"].rsplit("/", 1)[-1]: row for row in latest_rows(read_manifest(spec.manifest_uri)).to_pylist()}
    film = rows["film.mp4"]
    assert film["kind"] == "video" and film["status"] == "ok"
    assert film["frames_in"] == film["frames_out"] == 36 and film["segments"] >= 2
    assert abs(film["fps"] - 24) < 1e-6 and abs(film["duration_s"] - 1.5) < 0.05
    assert rows["broken.mkv"]["status"] == "error" and rows["broken.mkv"]["error_type"]
    assert rows["still.png"]["kind"] == "image"

    output = tmp_path / "out" / "film.mp4"
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 128)
        assert sum(1 for _ in container.decode(stream)) == 36
    assert _audio_hashes(output) == _audio_hashes(root / "film.mp4")

    again = run_job(spec, progress=False)
    assert again.counts["skipped"] == 2
