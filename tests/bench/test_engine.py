"""raysr.bench.engine: window counts, MAC counting and the GEMM ceiling (no timing asserted)."""

from __future__ import annotations

import numpy as np
import torch

from factories import compact_state, rrdbnet_state
from raysr.bench.engine import bench_forward, bench_photo, gemm_peak_gmacs, gemm_peaks, macs_per_input_px, window_plan
from raysr.engine import EngineOptions
from raysr.engine.precision import cpu_supports_bf16
from raysr.models.load import load_model


def test_window_plan_matches_the_engine_tiling(save_state):
    loaded = load_model(str(save_state(rrdbnet_state(), "rrdb.pth")))
    plan = window_plan(loaded, EngineOptions(tile=128), 256, 256)
    # 2 windows per axis share one seam: (256 + 16 px cross-fade + 2 × 24 px context) / 2
    assert (plan["windows"], plan["window"]) == (4, (160, 160))
    assert plan["window_px_over_image_px"] == round(4 * 160 * 160 / 256**2, 3)
    assert window_plan(loaded, EngineOptions(), 100, 60)["windows"] == 1  # no tile: untiled


def test_macs_per_pixel_counts_convolutions(save_state):
    state = compact_state(num_conv=2, num_feat=8)
    loaded = load_model(str(save_state(state, "compact.pth")))
    # conv_first 3→8, 2 body convs 8→8, conv_last 8→48: 3×3 each, all at input resolution
    expected = 9 * (3 * 8 + 2 * 8 * 8 + 8 * 48)
    assert macs_per_input_px(loaded) == expected


def test_gemm_peak_is_positive():
    assert gemm_peak_gmacs(torch.float32, torch.device("cpu"), size=64, repeats=1) > 0


def test_the_bf16_peak_is_measured_only_on_a_cpu_that_runs_bf16_natively():
    # Elsewhere a 2048³ bf16 matmul is emulated: ~20 s each, and a figure raysr never runs at.
    peaks = gemm_peaks(torch.device("cpu"), size=64)
    assert peaks["peak_fp32_gmacs_per_s"] > 0
    assert ("peak_bf16_gmacs_per_s" in peaks) == cpu_supports_bf16()


def test_bench_forward_times_eager_nchw_and_compiled(save_state):
    path = save_state(compact_state(num_conv=1, num_feat=4), "compact.pth")
    report = bench_forward(str(path), size=(24, 32), batch=2, repeats=1)
    assert report["input"] == "2x32x24" and report["compile_mode"] == "default"
    expected = {"eager", "compiled"} | ({"eager_nchw"} if report["channels_last"] else set())
    assert {name for name in expected if report[f"{name}_items_per_s"] > 0} == expected
    assert "compile_failure" not in report
    assert not torch.backends.cudnn.deterministic  # flags put back


def test_bench_photo_is_a_square_uint8_photo_at_any_size():
    for size in (64, 600):
        photo = bench_photo(size)
        assert photo.shape == (size, size, 3) and photo.dtype == np.uint8 and photo.std() > 10
