"""bench_video reports both paths (a benchmark, not a timed test: only the shape of the report is checked)."""

from __future__ import annotations

from raysr.video.bench import bench_video, sequential_loop
from raysr.video.options import EncodeOptions


def test_bench_reports_both_paths(clip, upscale2x):
    path = clip("in.mp4", frames=24)
    report = bench_video(path, upscale2x, EncodeOptions(preset="ultrafast"), target_seconds=0.4, workers=2, repeats=1)
    assert report["frames"] == 24 and report["segments"] == 2 and (report["workers"], report["repeats"]) == (2, 1)
    assert report["sequential_fps"] > 0 and report["segment_fps"] > 0 and report["speedup"] > 0
    assert set(report["segment_phases_s"]) == {"plan", "decode", "upscale", "encode", "join", "verify"}


def test_sequential_loop_counts_frames(clip, upscale2x):
    assert sequential_loop(clip("in.mkv", frames=12, pix_fmt="yuv420p10le"), upscale2x) == 12
