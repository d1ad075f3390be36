"""The CUDA paths of the engine: fp16 policy, NaN fallback, auto tile from free GPU
memory, a real out-of-memory back-off, torch.compile. Skipped without a GPU; run on
a GPU machine with ``pytest tests/engine/test_cuda.py``."""

import numpy as np
import pytest
import torch

from factories import NanOnMarkedTiles, compact_state
from raysr.engine import EngineOptions, Upscaler
from raysr.imageops.metrics import psnr
from raysr.models.load import LoadedModel, load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def x4plus(real_weights_dir):
    return load_model("RealESRGAN_x4plus", real_weights_dir, sources=("cache",))


@pytest.fixture
def compact(save_state):
    return load_model(str(save_state(compact_state(num_conv=4))))


def test_auto_is_fp16_close_to_fp32_and_to_the_cpu(x4plus, photo):
    crop = photo[200:328, 200:328]
    fp16 = Upscaler(x4plus, EngineOptions()).upscale(crop)
    fp32 = Upscaler(x4plus, EngineOptions(precision="fp32")).upscale(crop).image
    cpu = Upscaler(x4plus, EngineOptions(precision="fp32", device="cpu")).upscale(crop).image
    assert fp16.precision == "fp16" and fp16.precision_fallback_tiles == 0
    assert psnr(fp16.image, fp32) >= 45.0
    assert psnr(fp32, cpu) >= 50.0


def test_auto_tile_runs_a_photo_untiled_when_the_gpu_has_room(x4plus, photo):
    result = Upscaler(x4plus, EngineOptions()).upscale(photo)
    assert result.tile >= max(photo.shape[:2]) and result.oom_retries == 0


def test_non_finite_fp16_tiles_rerun_in_fp32(compact):
    image = np.random.default_rng(0).integers(0, 128, (64, 64, 3)).astype(np.uint8)
    image[5, 5] = 255
    fp16_nan = NanOnMarkedTiles(compact.module, lambda x: x.dtype == torch.float16)  # as an fp16 overflow would
    wrapped = LoadedModel(compact.spec, fp16_nan, compact.weights, compact.weights_sha256, compact.arch)
    options = EngineOptions(precision="fp16", tile=32, tile_pad=4, tile_overlap=0)
    result = Upscaler(wrapped, options).upscale(image)
    assert result.precision == "fp16" and result.precision_fallback_tiles == 1
    assert np.isfinite(result.image).all()
    fp32 = Upscaler(compact, options.model_copy(update={"precision": "fp32"})).upscale(image).image
    np.testing.assert_array_equal(result.image[:100, :100], fp32[:100, :100])


def test_real_cuda_out_of_memory_backs_off_to_smaller_tiles(x4plus, photo):
    image = np.ascontiguousarray(np.tile(photo, (2, 2, 1)))  # 1024²: ~3 GiB of fp16 activations untiled
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(1.5 * 2**30 / total)
    try:
        result = Upscaler(x4plus, EngineOptions(tile=1024, min_tile=64)).upscale(image)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert result.oom_retries >= 1 and result.tile < 1024
    assert result.image.shape == (4096, 4096, 3)


def test_compiled_fp16_matches_eager(compact):
    image = np.random.default_rng(1).integers(0, 256, (96, 80, 3)).astype(np.uint8)
    eager = Upscaler(compact, EngineOptions(tile=48)).upscale(image).image
    compiled = Upscaler(compact, EngineOptions(tile=48, compile=True))
    result = compiled.upscale(image)
    assert compiled.compiled and result.precision == "fp16"
    assert psnr(result.image, eager) >= 45.0


def test_same_input_same_output(x4plus, photo):
    up = Upscaler(x4plus, EngineOptions(tile=128))
    crop = photo[:192, :192]
    np.testing.assert_array_equal(up.upscale(crop).image, up.upscale(crop).image)
