"""Seam and precision checks with real RealESRGAN_x4plus weights on a real photo."""

import pytest

from raysr.engine import EngineOptions, Upscaler
from raysr.engine.precision import cpu_supports_bf16
from raysr.imageops.metrics import psnr
from raysr.models.load import load_model


@pytest.fixture(scope="module")
def x4plus(real_weights_dir):
    return load_model("RealESRGAN_x4plus", real_weights_dir, sources=("cache",))


def test_default_tiling_has_no_visible_seams_at_tile_128(x4plus, photo):
    crop = photo[40:232, 120:312]  # 192 x 192: 2 x 2 tiles at tile 128
    untiled = Upscaler(x4plus, EngineOptions(tile=512)).upscale(crop).image
    tiled = Upscaler(x4plus, EngineOptions(tile=128)).upscale(crop)
    assert tiled.tile == 128
    assert psnr(tiled.image, untiled) >= 50.0


@pytest.mark.skipif(not cpu_supports_bf16(), reason="needs a CPU with native bf16")
def test_bf16_policy_stays_close_to_fp32(x4plus, photo):
    crop = photo[200:264, 200:264]
    fp32 = Upscaler(x4plus, EngineOptions(precision="fp32")).upscale(crop).image
    auto = Upscaler(x4plus, EngineOptions(precision="auto")).upscale(crop)
    assert auto.precision == "bf16" and auto.precision_fallback_tiles == 0
    assert psnr(auto.image, fp32) >= 45.0
