"""The CI smoke version of `raysr bench pipeline|official`: a tiny random RRDBNet, two tiny
images. A benchmark, not a timed test: only the report's fields and sane values are checked."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from factories import rrdbnet_state
from raysr.bench import bench_pipeline
from raysr.bench.pipeline import write_bench_images
from raysr.cli import main


@pytest.fixture
def tiny_model(save_state):
    return save_state(rrdbnet_state(num_blocks=1, num_feat=8), "tiny_rrdb_x4.pth")


def test_write_bench_images_shapes(tmp_path):
    paths = write_bench_images(tmp_path, 3, 40)
    assert [p.name for p in paths] == ["img000.png", "img001.png", "img002.png"]
    import cv2

    assert all(cv2.imread(str(p)).shape == (40, 40, 3) for p in paths)


def test_smoke_pipeline_reports_rates_and_efficiency(tiny_model):
    # `raysr run` is left out of CI's smoke run: Ray's start alone is most of a minute on a busy 2-core runner.
    report = bench_pipeline(str(tiny_model), images=2, size=128, tile=32, repeats=1, with_run=False)
    for key in ("bare_images_per_s", "upscale_images_per_s", "upscale_auto_tile_images_per_s",
                "upscale_official_seams_images_per_s", "bare_gmacs_per_s", "peak_fp32_gmacs_per_s"):
        assert report[key] > 0, key
    # a ratio of two timings of a tiny model: only its definition is checked here, never its size
    # (tiled ran 1.67x the bare forward once on a busy CI runner); figures are `raysr bench`'s job
    # (every figure is rounded to 3 decimals, so to that)
    assert report["upscale_efficiency"] == pytest.approx(report["upscale_images_per_s"] / report["bare_images_per_s"],
                                                         rel=0.01, abs=0.002)
    assert report["windows_per_image"] == 4 and report["window_px_over_image_px"] > 1
    # the official seams (10 px context, no cross-fade) compute fewer window pixels than raysr's
    assert 1 < report["official_seams_window_px_over_image_px"] < report["window_px_over_image_px"]
    assert report["macs_per_input_px"] > 0
    json.dumps(report)  # the JSON line


def test_cli_bench_pipeline_writes_json(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "pipeline", "--model", str(tiny_model), "--images", "1", "--size", "32", "--tile", "32",
                 "--repeats", "1", "--no-run", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bare_images_per_s" in printed.splitlines()[-1]  # table, then one JSON line
    report = json.loads(out.read_text())
    assert report["tile"] == 32 and report["windows_per_image"] == 1 and "run_images_per_s" not in report


def test_bad_arguments_are_refused(tiny_model):
    with pytest.raises(ValueError, match="images >= 1"):
        bench_pipeline(str(tiny_model), images=0)


@pytest.mark.skipif(os.environ.get("RAYSR_BENCH_OFFICIAL") != "1",
                    reason="installs realesrgan 0.3.0 + basicsr 1.4.2 from the package index; set RAYSR_BENCH_OFFICIAL=1")
def test_official_side_by_side(tiny_model, tmp_path):
    report = bench_pipeline(str(tiny_model), images=1, size=32, tile=16, repeats=1, with_run=False,
                            with_official=True, bench_dir=tmp_path / "peer")
    assert report["official_images_per_s"] > 0 and report["raysr_over_official"] > 0
    # same weights, both FP32 and untiled: the engines agree to rounding
    assert report["psnr_official_vs_raysr_fp32_untiled_db"] > 45 or math.isinf(report["psnr_official_vs_raysr_fp32_untiled_db"])
    assert np.isfinite(report["psnr_official_vs_raysr_tiled_db"])
