"""The SD x4 upscaler engine, end to end on a tiny random-weight pipeline.

The components (UNet, VAE, CLIP text encoder, BPE tokenizer, schedulers) are built
here from small configs: no hub access. The tiny model's output is noise, so these
tests check mechanics (offline loading, shapes, dtypes, seeds, tiles, blending),
not restoration quality.
"""

import numpy as np
import pytest
import torch

from factories import tiny_diffusion_pipeline as tiny_pipeline
from raysr.diffusion import SD_X4_UPSCALER, DiffusionUpscaler, load_diffusion_pipeline
from raysr.diffusion import pipeline as diffusion_pipeline
from raysr.engine.upscaler import EngineError, EngineTimeoutError
from raysr.job.spec import DiffusionSpec
from raysr.weights import WeightsError
from raysr.weights.hub import import_snapshot, resolve_snapshot

# guidance 1 skips classifier-free guidance (half the UNet work); one test runs it.
FAST = {"steps": 2, "tile": 128, "tile_overlap": 32, "guidance_scale": 1.0}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights cache holding the tiny pipeline as the SD x4 hub snapshot."""
    saved = tmp_path_factory.mktemp("saved")
    tiny_pipeline().save_pretrained(saved)
    cache = tmp_path_factory.mktemp("weights")
    import_snapshot(saved, SD_X4_UPSCALER, cache)
    return cache


@pytest.fixture(scope="module")
def upscaler(weights_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return DiffusionUpscaler(SD_X4_UPSCALER, DiffusionSpec(**FAST), weights_dir=weights_dir, precision="fp32")


@pytest.fixture(scope="module")
def crop(photo):
    return np.ascontiguousarray(photo[60:108, 196:244])  # 48×48 of the astronaut's face


@pytest.fixture(scope="module")
def small(crop):
    return np.ascontiguousarray(crop[12:36, 10:30])  # 24×20: layout tests need no more


def with_spec(upscaler, **changes):
    """The same loaded pipeline with other settings (loading once keeps the folder fast)."""
    return DiffusionUpscaler(upscaler.pipeline, upscaler.spec.model_copy(update=changes), precision="fp32")


def test_loads_offline_from_the_cache_and_records_provenance(upscaler, weights_dir, crop):
    snapshot = resolve_snapshot(SD_X4_UPSCALER, weights_dir)
    assert upscaler.weights.sha256 == snapshot.sha256
    assert upscaler.weights.source == f"hub:{SD_X4_UPSCALER}@{snapshot.revision}"
    assert upscaler.scale == 4 and upscaler.precision == "fp32"
    result = upscaler.upscale(crop)
    assert result.image.shape == (192, 192, 3) and result.image.dtype == np.uint8
    assert result.precision == "fp32" and result.precision_fallback_tiles == 0
    assert upscaler.last_tiles == 1


def test_load_diffusion_pipeline_from_repo_id_or_folder(weights_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from diffusers import StableDiffusionUpscalePipeline

    by_name = load_diffusion_pipeline(SD_X4_UPSCALER, weights_dir)
    by_dir = load_diffusion_pipeline(resolve_snapshot(SD_X4_UPSCALER, weights_dir).path)
    assert isinstance(by_name, StableDiffusionUpscalePipeline) and by_name.vae_scale_factor == 4
    assert torch.equal(by_name.unet.conv_in.weight, by_dir.unet.conv_in.weight)


def test_same_seed_same_output_other_seed_other_output(upscaler, small):
    first = upscaler.upscale(small).image
    assert np.array_equal(first, upscaler.upscale(small).image)
    assert not np.array_equal(first, with_spec(upscaler, seed=1).upscale(small).image)


def test_prompt_and_negative_prompt_change_the_output(upscaler, small):
    plain = upscaler.upscale(small).image
    assert not np.array_equal(plain, with_spec(upscaler, prompt="a face, sharp").upscale(small).image)
    guided = with_spec(upscaler, prompt="a face", guidance_scale=9.0)
    negative = with_spec(upscaler, prompt="a face", guidance_scale=9.0, negative_prompt="blurry")
    assert not np.array_equal(guided.upscale(small).image, negative.upscale(small).image)


def test_tiled_run_covers_the_image_and_stays_in_range(upscaler, crop):
    tiled = with_spec(upscaler, tile=32, tile_overlap=8)
    first = tiled.upscale(crop).image
    assert tiled.last_tiles == 4  # 48 px > 32 + 8 → 2×2 windows of 28 px (half the axis + the cross-fade)
    assert first.shape == (192, 192, 3) and first.dtype == np.uint8
    assert np.array_equal(first, tiled.upscale(crop).image)  # tile seeds are reproducible
    assert first.std() > 0


def test_tiles_blend_to_the_untiled_result_for_a_local_model(upscaler, crop, monkeypatch):
    """With a pixel-local stand-in for the pipeline (upsample of window + its latent noise),
    every tile must see the right window and the right crop of the image-wide noise, and the
    cross-fade must reproduce the untiled result: any misplaced tile or seam shows up."""

    def local_model(self, window, latents, seed, dtype):
        mixed = window + 0.05 * latents[:, :3]
        return torch.nn.functional.interpolate(mixed, scale_factor=4, mode="nearest").clamp(0, 1)

    monkeypatch.setattr(diffusion_pipeline.DiffusionUpscaler, "_call", local_model)
    whole = upscaler.upscale(crop).image.astype(int)
    tiled = with_spec(upscaler, tile=32, tile_overlap=8)
    assert np.abs(tiled.upscale(crop).image.astype(int) - whole).max() <= 1
    assert tiled.last_tiles == 4


def test_gray_in_gray_out(upscaler, small):
    gray = small[:, :, 1]
    out = upscaler.upscale(gray).image
    assert out.shape == (96, 80) and out.dtype == np.uint8
    assert upscaler.upscale(gray[:, :, None]).image.shape == (96, 80, 1)


def test_uint16_in_uint16_out(upscaler, small):
    out = upscaler.upscale(small.astype(np.uint16) * 257).image
    assert out.dtype == np.uint16 and out.shape == (96, 80, 3)
    assert out.max() > 255  # the full 16-bit range is used, not 8-bit values


def test_alpha_is_resized_not_diffused(upscaler, small):
    alpha = np.zeros((24, 20, 1), np.uint8)
    alpha[4:18, 4:16] = 255
    out = upscaler.upscale(np.concatenate([small, alpha], axis=2)).image
    assert out.shape == (96, 80, 4)
    assert out[40, 40, 3] == 255 and out[2, 2, 3] == 0
    opaque = upscaler.upscale(np.concatenate([small, np.full_like(alpha, 255)], axis=2)).image
    assert (opaque[:, :, 3] == 255).all()


def test_timeout_stops_the_item(upscaler, small):
    with pytest.raises(EngineTimeoutError, match="item timeout"):
        upscaler.upscale(small, timeout_s=1e-9)


def test_bad_inputs_and_settings_are_refused(upscaler):
    with pytest.raises(EngineError, match="uint8 or uint16"):
        upscaler.upscale(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(EngineError, match=r"got shape \(8, 8, 2\)"):
        upscaler.upscale(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(EngineError, match="tile_overlap .32. must be smaller than diffusion.tile .32."):
        with_spec(upscaler, tile=32, tile_overlap=32)


def test_missing_snapshot_names_the_fix(tmp_path):
    with pytest.raises(WeightsError, match=f"raysr weights fetch {SD_X4_UPSCALER}"):
        DiffusionUpscaler(SD_X4_UPSCALER, weights_dir=tmp_path)


def test_fp16_needs_cuda(upscaler):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    from raysr.engine.precision import PrecisionError

    with pytest.raises(PrecisionError, match="fp16 runs only on CUDA"):
        DiffusionUpscaler(upscaler.pipeline, upscaler.spec, precision="fp16")


def test_non_finite_fp16_tiles_rerun_in_fp32(small, monkeypatch):
    """The CUDA fp16 policy, exercised on CPU with a stand-in pipeline call: a tile whose
    half-precision output is NaN is rerun with the UNet and text encoder in fp32."""
    from raysr.engine.precision import PrecisionPlan

    def nan_in_half(self, window, latents, seed, dtype):
        assert self.pipeline.unet.dtype == dtype and self.pipeline.vae.dtype == torch.float32
        out = torch.nn.functional.interpolate(window, scale_factor=4, mode="nearest")
        return out * torch.nan if dtype == torch.float16 else out

    monkeypatch.setattr(diffusion_pipeline.DiffusionUpscaler, "_call", nan_in_half)
    up = DiffusionUpscaler(tiny_pipeline(), DiffusionSpec(**FAST), precision="fp32")
    up.plan = PrecisionPlan("fp16", torch.device("cpu"), torch.float16, None, False, True)
    up._place(torch.float16)  # what the constructor does with a CUDA fp16 plan
    result = up.upscale(small)
    assert result.precision == "fp16" and result.precision_fallback_tiles == up.last_tiles == 1
    assert np.array_equal(result.image, np.repeat(np.repeat(small, 4, axis=0), 4, axis=1))
    assert up.pipeline.unet.dtype == torch.float16  # back to the plan after the rerun
