"""The CI smoke version of `raysr bench items`: a few tiny images on the session's cluster.
A benchmark, not a timed test: only the report's bookkeeping is checked."""

from __future__ import annotations

import json

import cv2
import pytest

from raysr.bench import bench_items
from raysr.bench.items import write_tiny_images


def test_tiny_images_nest_a_thousand_per_folder(tmp_path):
    write_tiny_images(tmp_path, 1002, side=16)
    folders = sorted(path.name for path in tmp_path.iterdir())
    assert folders == ["d0000", "d0001"] and len(list((tmp_path / "d0001").iterdir())) == 2
    assert cv2.imread(str(tmp_path / "d0001" / "img0001001.png")).shape == (16, 16, 3)


def test_smoke_items_first_run_then_a_resume_that_skips_all(ray_cluster):
    report = bench_items(items=12, side=16, address=ray_cluster.address)
    assert report["first_run_counts"] == {"ok": 12}
    assert report["resume_counts"] == {"skipped": 12}
    assert report["first_run_items_per_s"] > 0 and report["resume_items_per_s"] > 0
    assert report["resume_driver_peak_rss_mb"] > 0
    # One part per run at this size (a part every 5000 rows or 30 s), a third if a slow runner
    # passes 30 s; no longer one per batch of the process pass (12 here).
    assert 2 <= report["manifest_parts"] <= 4
    json.dumps(report)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="items >= 1"):
        bench_items(items=0)
