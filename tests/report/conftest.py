"""A real manifest for the report tests: real images on disk, rows written by ManifestWriter.

Two runs: an item that failed in the first run and succeeded in the second (the
report must show its latest row), and a second run holding ok, flagged, error,
skipped and video rows spread over two nodes and three actors. Two names are
hostile: an input file literally called ``<img src=x onerror=alert(1)>.png`` and
an error message ``<script>alert(1)</script>``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from clips import write_clip

from raysr.manifest import ManifestWriter, new_row
from raysr.video import upscale_video

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
HOSTILE_MESSAGE = "<script>alert(1)</script>"
SCALE = 4
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class BuiltManifest:
    uri: str
    latest_counts: dict[str, int]  # status → items, by each item's latest row
    images_with_output: int  # ok/flagged images whose output exists on disk
    videos_with_output: int  # ok/flagged videos whose output exists on disk
    missing_output: str  # the output_uri of an ok row whose file was deleted
    hostile_name: str = HOSTILE_NAME
    hostile_message: str = HOSTILE_MESSAGE


def _save(path: Path, rgb: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())  # bytes, not cv2.imwrite: the name holds '<' and '>'
    return str(path)


def _pair(photo: np.ndarray, root: Path, name: str, index: int) -> tuple[str, str, np.ndarray]:
    """A 48×48 input cut from the photo and its ×4 bicubic "output" on disk."""
    y, x = 120 + 40 * (index % 4), 150 + 50 * (index // 4)
    small = np.ascontiguousarray(photo[y:y + 48, x:x + 48])
    big = cv2.resize(small, (48 * SCALE, 48 * SCALE), interpolation=cv2.INTER_CUBIC)
    return _save(root / "in" / name, small), _save(root / "out" / name, big), small


def _video_pair(root: Path, name: str) -> tuple[str, str]:
    """A 48-frame 24 fps clip (frames that differ, see ``clips.pattern``) and its real raysr
    upscale by ``SCALE`` (nearest), timestamps kept as raysr keeps them."""
    source, target = root / "in" / name, root / "out" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    write_clip(source, frames=48, size=(64, 48), fps=24, audio=None)
    upscale_video(source, target, lambda rgb: rgb.repeat(SCALE, axis=0).repeat(SCALE, axis=1))
    return str(source), str(target)


def _row(input_uri: str, output_uri: str | None, status: str, second: float, **extra) -> dict:
    base = dict(
        item_id=f"id-{Path(input_uri).name}", input_uri=input_uri, output_uri=output_uri, status=status,
        kind="image", width=48, height=48, output_width=48 * SCALE, output_height=48 * SCALE,
        route="photo", model="RealESRGAN_x4plus", precision="bf16",
        read_s=0.01, upscale_s=0.5 + 0.1 * second, color_s=0.02, metrics_s=0.03, write_s=0.04,
        lr_psnr=32.0 + second, sharpness=0.8 + second / 10, delta_e=2.0 + second / 5,
        started_at=T0 + dt.timedelta(seconds=second), finished_at=T0 + dt.timedelta(seconds=second + 1),
    )
    base.update(extra)
    return new_row(**base)


@pytest.fixture(scope="session")
def built_manifest(tmp_path_factory, photo) -> BuiltManifest:
    root = tmp_path_factory.mktemp("job")
    workers = [("node-a", "actor-1"), ("node-a", "actor-2"), ("node-b", "actor-3")]
    rows: list[dict] = []
    for index, name in enumerate(["one.png", "two.png", "three.png", HOSTILE_NAME, "gone.png", "retry.png"]):
        input_uri, output_uri, _ = _pair(photo, root, name, index)
        node, actor = workers[index % 3]
        rows.append(_row(input_uri, output_uri, "ok", 2.0 * index, node_id=node, actor_id=actor))
    missing_output = rows[4]["output_uri"]
    Path(missing_output).unlink()
    input_uri, output_uri, _ = _pair(photo, root, "dull.png", 7)
    rows.append(_row(input_uri, output_uri, "flagged", 5.0, lr_psnr=15.2, delta_e=14.0, sharpness=0.00234,
                     node_id="node-b", actor_id="actor-3", flag_reasons="lr_psnr 15.2 < 20; delta_e 14.0 > 12"))
    rows.append(_row(str(root / "in" / "broken.png"), None, "error", 1.0, error_stage="read", error_type="truncated",
                     error_message=HOSTILE_MESSAGE, upscale_s=None, lr_psnr=None, sharpness=None, delta_e=None))
    rows.append(_row(str(root / "in" / "oom.png"), None, "error", 3.0, error_stage="upscale", error_type="OutOfMemory",
                     error_message="CUDA out of memory", node_id="node-a", actor_id="actor-1", lr_psnr=None,
                     sharpness=None, delta_e=None))
    rows.append(_row(str(root / "in" / "same.png"), str(root / "out" / "same.png"), "skipped", 0.5,
                     skip_reason="unchanged", upscale_s=None, lr_psnr=None, sharpness=None, delta_e=None))
    tape_in, tape_out = _video_pair(root, "tape.mkv")
    rows.append(_row(tape_in, tape_out, "ok", 9.0, kind="video",
                     frames_in=48, frames_out=48, fps=24.0, duration_s=2.0, segments=1, codec="h264",
                     node_id="node-b", actor_id="actor-3", lr_psnr=None, sharpness=None, delta_e=None))
    uri = str(root / "manifest")
    earlier = ManifestWriter(uri, job_id="report-test", run_id="r1")
    earlier.append([_row(rows[5]["input_uri"], None, "error", -3600.0, error_type="timeout", error_stage="upscale",
                         error_message="timed out")])
    earlier.flush()
    writer = ManifestWriter(uri, job_id="report-test", run_id="r2")
    writer.append(rows)
    writer.flush()
    return BuiltManifest(uri, {"ok": 7, "flagged": 1, "error": 2, "skipped": 1}, 5 + 1, 1, missing_output)


@pytest.fixture(scope="session")
def report_html(built_manifest, tmp_path_factory) -> Path:
    """The report of :func:`built_manifest`, written once for the whole session."""
    from raysr.report import write_report

    return write_report(built_manifest.uri, tmp_path_factory.mktemp("report") / "report.html", sample=8)
