import numpy as np
import pytest
import torch

from factories import NanOnMarkedTiles, compact_receptive_radius, compact_state
from raysr.engine import EngineError, EngineOptions, Upscaler
from raysr.engine.precision import cpu_supports_bf16
from raysr.models.load import LoadedModel, load_model
from raysr.models.registry import ModelSpec


@pytest.fixture
def compact(save_state):
    return load_model(str(save_state(compact_state(num_conv=4))))


def _wrapped(loaded: LoadedModel, module: torch.nn.Module) -> LoadedModel:
    return LoadedModel(loaded.spec, module, loaded.weights, loaded.weights_sha256, loaded.arch)


def _image(shape, dtype=np.uint8, seed=0):
    maximum = 255 if dtype == np.uint8 else 65535
    return np.random.default_rng(seed).integers(0, maximum + 1, shape).astype(dtype)


@pytest.mark.parametrize("shape", [(24, 30), (24, 30, 1), (24, 30, 3), (24, 30, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_output_keeps_layout_and_dtype(compact, shape, dtype):
    result = Upscaler(compact, EngineOptions(precision="fp32")).upscale(_image(shape, dtype))
    assert result.image.dtype == dtype
    assert result.image.shape == (96, 120, *shape[2:])
    assert result.precision == "fp32"


def test_uint16_matches_uint8_path(compact):
    image8 = _image((20, 20, 3))
    image16 = image8.astype(np.uint16) * 257
    up = Upscaler(compact, EngineOptions(precision="fp32"))
    out8 = up.upscale(image8).image.astype(np.float64)
    out16 = up.upscale(image16).image.astype(np.float64) / 257
    assert np.abs(out8 - out16).max() <= 1.0


def test_gray_comes_back_gray_and_matches_rgb_luma(compact):
    gray = _image((20, 22))
    up = Upscaler(compact, EngineOptions(precision="fp32"))
    out = up.upscale(gray).image
    rgb = up.upscale(np.repeat(gray[:, :, None], 3, axis=2)).image.astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    assert out.ndim == 2
    assert np.abs(out - luma).max() <= 1.0


@pytest.mark.parametrize("alpha_mode", ["model", "classical"])
def test_alpha_is_upscaled_and_opaque_alpha_stays_opaque(compact, alpha_mode):
    up = Upscaler(compact, EngineOptions(precision="fp32", alpha=alpha_mode))
    image = _image((20, 20, 4))
    image[:, :, 3] = 255
    assert (up.upscale(image).image[:, :, 3] == 255).all()
    image[:10, :, 3] = 0
    out = up.upscale(image).image[:, :, 3]
    assert out[:30].mean() < 60 and out[50:].mean() > 200


def test_outscale_resizes_after_the_model(compact):
    result = Upscaler(compact, EngineOptions(precision="fp32", outscale=2.5)).upscale(_image((20, 30, 3)))
    assert result.image.shape == (50, 75, 3)


def test_tiled_equals_untiled_when_pad_covers_receptive_field(save_state):
    loaded = load_model(str(save_state(compact_state(num_conv=4))))
    pad = compact_receptive_radius(4)
    image = _image((61, 47, 3), seed=3)
    untiled = Upscaler(loaded, EngineOptions(precision="fp32")).upscale(image).image
    tiled = Upscaler(loaded, EngineOptions(precision="fp32", tile=16, tile_pad=pad, tile_overlap=4, tile_batch=3)).upscale(image)
    assert tiled.tile == 16
    difference = np.abs(tiled.image.astype(int) - untiled.astype(int))
    # Same float values up to summation order; only rounding ties may flip by one level.
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_size_multiple_is_padded_and_cropped(save_state):
    from factories import rrdbnet_state

    loaded = load_model(str(save_state(rrdbnet_state(scale=2))))
    assert loaded.spec.size_multiple == 4
    result = Upscaler(loaded, EngineOptions(precision="fp32", tile=16, tile_pad=4)).upscale(_image((33, 27, 3)))
    assert result.image.shape == (66, 54, 3)


def test_deterministic(compact):
    image = _image((40, 40, 3))
    up = Upscaler(compact, EngineOptions(tile=16))
    np.testing.assert_array_equal(up.upscale(image).image, up.upscale(image).image)


class _OomAbove(torch.nn.Module):
    """Raises CUDA-style OOM for windows larger than ``limit`` pixels."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.calls = inner, limit, 0

    def forward(self, x):
        self.calls += 1
        if x.shape[0] * x.shape[-1] * x.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_backs_off_to_smaller_tiles(compact):
    image = _image((64, 64, 3))
    reference = Upscaler(compact, EngineOptions(precision="fp32", tile=16, tile_pad=8)).upscale(image).image
    wrapped = _wrapped(compact, _OomAbove(compact.module, limit=40 * 40))
    result = Upscaler(wrapped, EngineOptions(precision="fp32", tile=64, tile_pad=8, min_tile=16)).upscale(image)
    assert result.oom_retries >= 1 and result.tile < 64
    assert np.abs(result.image.astype(int) - reference.astype(int)).max() <= 1


def test_out_of_memory_at_the_floor_fails_the_item_clearly(compact):
    wrapped = _wrapped(compact, _OomAbove(compact.module, limit=1))
    with pytest.raises(EngineError, match="out of memory even at the minimum tile size 16"):
        Upscaler(wrapped, EngineOptions(precision="fp32", tile=32, min_tile=16)).upscale(_image((40, 40, 3)))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="needs a CPU with native bf16")
def test_non_finite_tiles_rerun_in_fp32(compact):
    image = _image((64, 64, 3)) // 2
    image[5, 5] = 255  # marks the top-left tile(s) only
    # NaN only under bf16 autocast
    wrapped = _wrapped(compact, NanOnMarkedTiles(compact.module, lambda x: torch.is_autocast_enabled("cpu")))
    result = Upscaler(wrapped, EngineOptions(precision="bf16", tile=32, tile_pad=4, tile_overlap=0)).upscale(image)
    assert result.precision == "bf16"
    assert result.precision_fallback_tiles == 1
    fp32 = Upscaler(compact, EngineOptions(precision="fp32", tile=32, tile_pad=4, tile_overlap=0)).upscale(image).image
    # The rerun tile is the FP32 result; elsewhere bf16 stays close to it.
    np.testing.assert_array_equal(result.image[:100, :100], fp32[:100, :100])


def test_classical_model_and_bad_input():
    up = Upscaler(load_model("lanczos", scale=3), EngineOptions())
    assert up.upscale(_image((10, 12, 3))).image.shape == (30, 36, 3)
    with pytest.raises(EngineError, match="shape"):
        up.upscale(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(EngineError, match="uint8 or uint16"):
        up.upscale(np.zeros((4, 4, 3), np.float64))


def test_engine_does_not_import_ray():
    import subprocess
    import sys

    code = "import raysr.engine, raysr.models.load, sys; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compiled_engine_matches_eager(compact):
    image = _image((40, 36, 3), seed=5)
    options = EngineOptions(precision="fp32", tile=16, tile_pad=4)
    eager = Upscaler(compact, options).upscale(image).image
    compiled = Upscaler(compact, options.model_copy(update={"compile": True}))
    result = compiled.upscale(image)
    assert compiled.compiled
    assert np.abs(result.image.astype(int) - eager.astype(int)).max() <= 1
    assert options.settings() == options.model_copy(update={"compile": True}).settings()
