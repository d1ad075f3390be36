"""A run whose outputs can no longer be written (a full disk) stops instead of upscaling the rest of
the archive only to fail every write; once there is room again, the next run finishes the job.

The output folder is a 1 MiB tmpfs mounted for the test (tests run as root here; elsewhere the
test is skipped): a real ENOSPC from the kernel, not a patched write.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_outcomes, read_manifest
from raysr.sinks.write import OutputsStoppedError

ITEMS = 120
VIDEOS = 40


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root with CAP_SYS_ADMIN")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_and_the_next_run_finishes_once_there_is_room(ray_cluster, tmp_path, small_disk):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for index in range(ITEMS):  # noise: each 4x PNG output takes ~110 KB, so about nine fit in 1 MiB
        cv2.imwrite(str(inputs / f"i{index:03d}.png"), rng.integers(0, 256, (48, 48, 3), np.uint8))
    manifest = tmp_path / "manifest"  # beside the disk that fills, as an S3 or NFS manifest would be
    job = {"name": "full", "inputs": [str(inputs)], "output": {"path": str(small_disk / "out")},
           "manifest": str(manifest), "model": "bicubic", "stages": {"metrics": False}}

    with pytest.raises(OutputsStoppedError, match=r"in a row could not be written.*No space left on device"):
        run_job(parse_spec(job), address=ray_cluster.address, progress=False)

    rows = read_manifest(str(manifest)).to_pylist()
    written = [row for row in rows if row["status"] == "ok"]
    unwritable = [row for row in rows if row["error_type"] == "output_unwritable"]
    assert written and len(unwritable) >= 16
    assert len(rows) < ITEMS, "the run went through the whole archive after its disk filled"
    assert all("free space" in row["error_message"] for row in unwritable)
    assert {row["status"] for row in rows} <= {"ok", "error"}
    for row in written:  # what it did write is whole
        assert Path(row["output_uri"]).stat().st_size == row["output_size"]
    assert not [path for path in small_disk.rglob("*") if path.name.endswith(".raysr-tmp")], "temp files left behind"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    report = run_job(parse_spec(job), address=ray_cluster.address, progress=False)
    assert report.counts["skipped"] == len(written) and report.counts["ok"] == ITEMS - len(written)
    latest = latest_outcomes(read_manifest(str(manifest))).to_pylist()
    assert len(latest) == ITEMS and all(row["status"] == "ok" for row in latest)


def test_raysr_upscale_stops_on_a_full_disk_too(tmp_path, small_disk):
    from raysr.engine import EngineOptions
    from raysr.models.load import load_model
    from raysr.quick import upscale_path

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for index in range(60):
        cv2.imwrite(str(inputs / f"i{index:03d}.png"), rng.integers(0, 256, (48, 48, 3), np.uint8))
    failures: list[str] = []
    with pytest.raises(OutputsStoppedError, match=r"in a row could not be written.*No space left on device"):
        upscale_path(inputs, small_disk / "out", load_model("bicubic"), EngineOptions(), progress=False,
                     on_error=failures.append)
    assert 16 <= len(failures) < 60 - 1  # stopped: not every image after the disk filled was tried
    assert all("free space" in line for line in failures)


def test_a_full_disk_stops_a_run_of_videos_and_the_next_run_finishes_them(ray_cluster, tmp_path, small_disk):
    from clips import write_clip

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(VIDEOS):
        write_clip(inputs / f"v{index:02d}.mp4", frames=24, size=(64, 48), fps=24, gop=12, audio=None)
    manifest = tmp_path / "manifest"
    job = {"name": "full-video", "inputs": [str(inputs)], "output": {"path": str(small_disk / "out")},
           "manifest": str(manifest), "model": "bicubic", "stages": {"metrics": False},
           "video": {"codec": "libx264", "crf": 18, "preset": "ultrafast", "segment_seconds": 0.5}}

    with pytest.raises(OutputsStoppedError, match=r"in a row could not be written.*No space left on device"):
        run_job(parse_spec(job), address=ray_cluster.address, progress=False)

    rows = [row for row in read_manifest(str(manifest)).to_pylist() if row["segment_index"] is None]
    written = [row for row in rows if row["status"] == "ok"]
    unwritable = [row for row in rows if row["error_type"] == "output_unwritable"]
    assert written and len(unwritable) >= 16, [(row["status"], row["error_message"]) for row in rows]
    assert len(rows) < VIDEOS, "the run went through every video after its disk filled"
    assert all("free space" in row["error_message"] for row in unwritable)
    print(f"\nfull disk, {VIDEOS} videos: stopped after {len(written)} written + {len(unwritable)} unwritable rows")

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    report = run_job(parse_spec(job), address=ray_cluster.address, progress=False)
    assert report.counts["skipped"] == len(written) and report.counts["ok"] == VIDEOS - len(written)
    assert not [path for path in small_disk.rglob("*") if ".raysr-segment" in path.name], "segment work left behind"


def test_raysr_upscale_stops_on_a_full_disk_with_videos_too(tmp_path, small_disk):
    from clips import write_clip
    from raysr.engine import EngineOptions
    from raysr.models.load import load_model
    from raysr.quick import upscale_path

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(VIDEOS):
        write_clip(inputs / f"v{index:02d}.mp4", frames=24, size=(64, 48), fps=24, gop=12, audio=None)
    (small_disk / "ballast").write_bytes(bytes(800 * 1024))  # room for a few of the ~22 KB outputs
    failures: list[str] = []
    with pytest.raises(OutputsStoppedError, match=r"in a row could not be written.*No space left on device"):
        upscale_path(inputs, small_disk / "out", load_model("bicubic"), EngineOptions(), progress=False,
                     on_error=failures.append)
    assert 16 <= len(failures) < VIDEOS - 1
    assert all("free space" in line for line in failures), failures
