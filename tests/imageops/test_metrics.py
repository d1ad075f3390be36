"""Tests for raysr.imageops.metrics."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest
from skimage import data
from skimage import metrics as skm

from raysr.imageops.metrics import lr_consistency, luminance, mean_delta_e, psnr, sharpness, ssim
from raysr.imageops.resize import resize
from factories import as_dtype as _as


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return data.coffee()  # (400, 600, 3) uint8


# --- psnr -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_psnr_identical_is_inf(coffee: np.ndarray, dtype: type) -> None:
    img = _as(coffee, dtype)
    assert psnr(img, img.copy()) == math.inf


def test_psnr_hand_computed() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48  # MSE = 48**2 / 48 = 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 48))
    assert psnr(a, a + 10) == pytest.approx(28.1308, abs=1e-4)  # MSE 100
    assert psnr(a, b, data_range=255) == pytest.approx(psnr(a, b))
    assert psnr(a, b, data_range=100) == pytest.approx(10 * math.log10(100**2 / 48))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_psnr_equals_skimage(coffee: np.ndarray, dtype: type) -> None:
    a, b = _as(coffee, dtype), _as(_noisy(coffee, 10), dtype)
    assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b), abs=1e-4)


def test_psnr_mixed_dtypes_compare_on_01_scale(coffee: np.ndarray) -> None:
    assert psnr(coffee, _as(coffee, np.uint16)) == math.inf
    noisy = _noisy(coffee, 10)
    assert psnr(coffee, _as(noisy, np.float32)) == pytest.approx(psnr(coffee, noisy), abs=1e-4)


def test_psnr_ignores_alpha(coffee: np.ndarray) -> None:
    alpha = np.zeros(coffee.shape[:2] + (1,), np.uint8)
    a = np.concatenate([coffee, alpha], axis=2)
    b = np.concatenate([coffee, alpha + 255], axis=2)
    assert psnr(a, b) == math.inf
    assert psnr(a, coffee) == math.inf


def test_psnr_gray_layouts(coffee: np.ndarray) -> None:
    g = coffee[..., 1]
    assert psnr(g, g[..., None]) == math.inf


def test_psnr_exceptions(coffee: np.ndarray) -> None:
    with pytest.raises(ValueError, match=re.escape(str(coffee[:10].shape))):
        psnr(coffee, coffee[:10])
    with pytest.raises(ValueError, match="gray"):
        psnr(coffee, coffee[..., 0])
    with pytest.raises(ValueError, match="dtype"):
        psnr(coffee, _as(coffee, np.uint16), data_range=255)
    with pytest.raises(ValueError, match="data_range"):
        psnr(coffee, coffee, data_range=0)


# --- ssim -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_ssim_identical_is_one(coffee: np.ndarray, dtype: type) -> None:
    img = _as(coffee, dtype)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-9)


def test_ssim_equals_skimage_on_luma(coffee: np.ndarray) -> None:
    noisy = _noisy(coffee, 15)
    y1, y2 = luminance(coffee), luminance(noisy)
    expected = skm.structural_similarity(
        y1, y2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(coffee, noisy) == pytest.approx(expected, abs=1e-6)


def test_ssim_drops_with_noise(coffee: np.ndarray) -> None:
    scores = [ssim(coffee, _noisy(coffee, s)) for s in (2, 10, 30)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_symmetric_and_alpha_ignored(coffee: np.ndarray) -> None:
    noisy = _noisy(coffee, 10)
    rgba = np.concatenate([noisy, np.zeros(coffee.shape[:2] + (1,), np.uint8)], axis=2)
    assert ssim(coffee, noisy) == pytest.approx(ssim(noisy, coffee))
    assert ssim(coffee, rgba) == pytest.approx(ssim(coffee, noisy))


def test_ssim_too_small_raises() -> None:
    tiny = np.zeros((10, 40), np.uint8)
    with pytest.raises(ValueError, match=re.escape("(10, 40)")):
        ssim(tiny, tiny)


# --- lr_consistency ---------------------------------------------------------


def test_lr_consistency(coffee: np.ndarray) -> None:
    lr = resize(coffee, (100, 150), "area")
    # Nearest 4x upscaling is exactly undone by area downscaling.
    exact = lr_consistency(resize(lr, (400, 600), "nearest"), lr)
    assert exact == {"psnr": math.inf, "ssim": pytest.approx(1.0)}
    good = lr_consistency(resize(lr, (400, 600), "bicubic"), lr)
    shifted = lr_consistency(np.roll(coffee, 8, axis=1), lr)
    assert set(good) == {"psnr", "ssim"}
    assert 30 < good["psnr"] < math.inf and good["ssim"] > 0.95
    assert shifted["psnr"] < good["psnr"] - 5 and shifted["ssim"] < good["ssim"]


def test_lr_consistency_mixed_dtype_and_mismatch(coffee: np.ndarray) -> None:
    lr = resize(coffee, (100, 150), "area")
    up = resize(lr, (400, 600), "nearest")
    assert lr_consistency(_as(up, np.float32), _as(lr, np.uint16))["psnr"] > 60
    with pytest.raises(ValueError, match="gray"):
        lr_consistency(up, lr[..., 0])


# --- sharpness --------------------------------------------------------------


def test_sharpness_known_values(coffee: np.ndarray) -> None:
    assert sharpness(np.full((32, 32, 3), 123, np.uint8)) == 0.0
    s = sharpness(coffee)
    blurred = sharpness(cv2.GaussianBlur(coffee, (0, 0), 2))
    assert s > 5 * blurred > 0
    # Scale-free across dtypes: computed on [0, 1] luma.
    assert sharpness(_as(coffee, np.uint16)) == pytest.approx(s, rel=1e-6)
    assert sharpness(_as(coffee, np.float32)) == pytest.approx(s, rel=1e-4)


def test_sharpness_checkerboard() -> None:
    # A 0/1 checkerboard: the 4-neighbour Laplacian is +-4 everywhere (the border reflects).
    board = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)
    lap_var = sharpness(board)
    assert lap_var == pytest.approx(16.0, rel=1e-6)


# --- mean_delta_e -----------------------------------------------------------


def test_delta_e_known_values(coffee: np.ndarray) -> None:
    assert mean_delta_e(coffee, coffee) == 0.0
    black = np.zeros((8, 8, 3), np.uint8)
    white = np.full((8, 8, 3), 255, np.uint8)
    assert mean_delta_e(black, white) == pytest.approx(100.0, abs=0.05)  # L 0 -> 100
    # Gray images are taken as R = G = B.
    assert mean_delta_e(black[..., 0], white[..., :1]) == pytest.approx(100.0, abs=0.05)


def test_delta_e_on_a_pixel_sample_stays_within_a_percent(coffee: np.ndarray) -> None:
    output = resize(coffee, (1600, 2400), "lanczos")  # 3.8 M pixels: every 2nd pixel of every 2nd row
    reference = np.clip(resize(coffee, (1600, 2400), "bicubic").astype(np.int16) + [6, -3, 4], 0, 255).astype(np.uint8)
    full = mean_delta_e(output, reference)
    sampled = mean_delta_e(output, reference, max_pixels=1 << 20)
    assert sampled != full and sampled == pytest.approx(full, rel=0.01)
    assert mean_delta_e(output, reference, max_pixels=10**9) == full  # under the cap: every pixel
    assert mean_delta_e(coffee, coffee, max_pixels=1000) == 0.0


def test_delta_e_grows_with_cast(coffee: np.ndarray) -> None:
    cast = [np.clip(coffee.astype(int) + [d, 0, -d], 0, 255).astype(np.uint8) for d in (5, 20)]
    small, large = (mean_delta_e(c, coffee) for c in cast)
    assert 0 < small < large


# --- luminance --------------------------------------------------------------


def test_luminance_known_values() -> None:
    rgb = np.zeros((2, 2, 4), np.uint8)
    rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[1, 0, 2] = 255
    rgb[1, 1, :3] = 255
    np.testing.assert_allclose(luminance(rgb), [[0.299, 0.587], [0.114, 1.0]], atol=1e-9)
    gray = np.array([[0, 65535]], np.uint16)
    np.testing.assert_allclose(luminance(gray), [[0.0, 1.0]])


def test_luminance_bad_shape() -> None:
    bad = np.zeros((4, 4, 2), np.uint8)
    with pytest.raises(ValueError, match=re.escape("(4, 4, 2)")):
        luminance(bad)
