"""Tests for raysr.imageops.color."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from skimage import data, exposure

from raysr.imageops.color import (
    COLOR_METHODS,
    ColorMethod,
    adain,
    correct_color,
    histogram_match,
    reinhard_lab,
    _atrous_low,
    wavelet_color_fix,
    wavelet_decompose,
)
from raysr.imageops.metrics import mean_delta_e
from raysr.imageops.resize import resize
from factories import as_dtype as _as

FIXES = tuple(m for m in COLOR_METHODS if m != "none")


def _lab(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32) / (255 if image.dtype == np.uint8 else 1)
    return cv2.cvtColor(x, cv2.COLOR_RGB2LAB).reshape(-1, 3)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3) uint8


@pytest.fixture(scope="module")
def shifted(astronaut: np.ndarray) -> np.ndarray:
    """Astronaut with a warm cast and more contrast in red: a typical SR colour drift."""
    x = astronaut.astype(np.float32) * [1.2, 0.9, 0.8] + [10, 0, -10]
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coffee_ref(astronaut: np.ndarray) -> np.ndarray:
    """Coffee resized to the astronaut's size: a reference with very different colours."""
    return resize(data.coffee(), astronaut.shape[:2], "bicubic")


# --- smoke, shapes, dtypes --------------------------------------------------


@pytest.mark.parametrize("method", COLOR_METHODS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtype_and_shape_kept(
    shifted: np.ndarray, astronaut: np.ndarray, method: ColorMethod, dtype: type
) -> None:
    out = correct_color(_as(shifted, dtype), _as(astronaut, dtype), method)
    assert out.shape == shifted.shape
    assert out.dtype == dtype
    if dtype == np.float32:
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("method", FIXES)
def test_reference_dtype_may_differ(
    shifted: np.ndarray, astronaut: np.ndarray, method: ColorMethod
) -> None:
    a = correct_color(shifted, astronaut, method)
    b = correct_color(shifted, _as(astronaut, np.uint16), method)
    assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize("method", FIXES)
@pytest.mark.parametrize("gray_shape", ["2d", "hw1"])
def test_gray(astronaut: np.ndarray, method: ColorMethod, gray_shape: str) -> None:
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    dark = (gray * 0.6).astype(np.uint8)
    if gray_shape == "hw1":
        gray, dark = gray[..., None], dark[..., None]
    out = correct_color(dark, gray, method)
    assert out.shape == dark.shape and out.dtype == np.uint8
    # Brightness comes back towards the reference.
    gap_before = abs(float(dark.mean()) - float(gray.mean()))
    assert abs(float(out.mean()) - float(gray.mean())) < 0.25 * gap_before


@pytest.mark.parametrize("method", COLOR_METHODS)
def test_alpha_passed_through(
    shifted: np.ndarray, astronaut: np.ndarray, method: ColorMethod
) -> None:
    alpha = np.random.default_rng(0).integers(0, 256, shifted.shape[:2] + (1,), dtype=np.uint8)
    rgba = np.concatenate([shifted, alpha], axis=2)
    out = correct_color(rgba, astronaut, method)
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3:], alpha)
    # The colour part is what the RGB call gives; reference alpha is ignored too.
    ref_rgba = np.concatenate([astronaut, 255 - alpha], axis=2)
    np.testing.assert_array_equal(out[..., :3], correct_color(shifted, ref_rgba, method))


def test_none_is_a_copy(shifted: np.ndarray, astronaut: np.ndarray) -> None:
    out = correct_color(shifted, astronaut, "none")
    np.testing.assert_array_equal(out, shifted)
    assert not np.shares_memory(out, shifted)


@pytest.mark.parametrize("method", FIXES)
def test_inputs_not_modified(
    shifted: np.ndarray, astronaut: np.ndarray, method: ColorMethod
) -> None:
    before_out, before_ref = shifted.copy(), astronaut.copy()
    correct_color(shifted, astronaut, method)
    np.testing.assert_array_equal(shifted, before_out)
    np.testing.assert_array_equal(astronaut, before_ref)


# --- known values -----------------------------------------------------------


@pytest.mark.parametrize("method", FIXES)
def test_colour_cast_corrected(
    shifted: np.ndarray, astronaut: np.ndarray, method: ColorMethod
) -> None:
    before = mean_delta_e(shifted, astronaut)
    after = mean_delta_e(correct_color(shifted, astronaut, method), astronaut)
    assert before > 20
    assert after < before / 2.5


def test_histogram_match_equals_skimage(astronaut: np.ndarray, coffee_ref: np.ndarray) -> None:
    ours = histogram_match(astronaut, coffee_ref)
    # skimage returns uint8 truncated from the same float mapping; we round it.
    theirs = exposure.match_histograms(astronaut, coffee_ref, channel_axis=-1)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def _w1(x: np.ndarray, y: np.ndarray) -> float:
    """Wasserstein-1 distance, in grey levels, between the histograms of two uint8 channels."""
    cdf_x = np.cumsum(np.bincount(x.ravel(), minlength=256)) / x.size
    cdf_y = np.cumsum(np.bincount(y.ravel(), minlength=256)) / y.size
    return float(np.abs(cdf_x - cdf_y).sum())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_histogram_match_histograms_close(
    astronaut: np.ndarray, coffee_ref: np.ndarray, dtype: type
) -> None:
    out = histogram_match(_as(astronaut, dtype), _as(coffee_ref, dtype))
    scale = {np.uint8: 1, np.uint16: 1 / 257, np.float32: 255}[dtype]
    out8 = np.rint(out * scale).astype(np.uint8)
    for c in range(3):
        before = _w1(astronaut[..., c], coffee_ref[..., c])
        after = _w1(out8[..., c], coffee_ref[..., c])
        # Ties in the source (one value maps to one value) keep it from being 0.
        assert after < 2.5
        assert after < 0.1 * before


def test_reinhard_moves_lab_moments(astronaut: np.ndarray) -> None:
    # A low-contrast, tinted copy whose correction stays inside the RGB gamut,
    # so clipping does not bend the moments.
    flat = (astronaut * 0.6 + [40, 30, 50]).astype(np.uint8)
    ref = _lab(astronaut)
    assert np.abs(_lab(flat).mean(0) - ref.mean(0)).max() > 10
    out = _lab(reinhard_lab(flat, astronaut))
    np.testing.assert_allclose(out.mean(0), ref.mean(0), atol=0.5)
    np.testing.assert_allclose(out.std(0), ref.std(0), atol=0.5)


def test_adain_matches_rgb_moments(shifted: np.ndarray, astronaut: np.ndarray) -> None:
    out = adain(_as(shifted, np.float32), _as(astronaut, np.float32)).reshape(-1, 3)
    ref = _as(astronaut, np.float32).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), ref.mean(0), atol=0.01)
    np.testing.assert_allclose(out.std(0), ref.std(0), atol=0.01)


@pytest.mark.parametrize("method", ["adain", "reinhard"])
def test_flat_output_gets_reference_mean(method: ColorMethod) -> None:
    flat, ref = np.full((32, 32, 3), 200, np.uint8), np.full((32, 32, 3), 90, np.uint8)
    out = correct_color(flat, ref, method)
    assert np.isfinite(out.astype(float)).all()
    np.testing.assert_allclose(out, 90, atol=1)


def test_wavelet_decompose_round_trip(astronaut: np.ndarray) -> None:
    x = _as(astronaut, np.float32)
    high, low = wavelet_decompose(x, 5)
    np.testing.assert_allclose(high + low, x, atol=1e-6)
    # The low band is smooth: far less Laplacian energy than the image.
    assert cv2.Laplacian(low, cv2.CV_32F).var() < 0.01 * cv2.Laplacian(x, cv2.CV_32F).var()


@pytest.mark.parametrize("channels", [1, 3])
def test_wavelet_low_band_on_a_decimated_copy_matches_the_full_cascade(astronaut: np.ndarray, channels: int) -> None:
    # A 4× output against its bicubic reference, as the colour stage sees it: the difference is
    # mostly fine detail (the sharpened output), with strong edges at the image's borders.
    photo = astronaut[:, :, :channels]
    sharp = _as(resize(photo, (600, 560), "lanczos"), np.float32)
    sharp = np.clip(sharp + 1.5 * (sharp - _as(resize(photo, (600, 560), "area"), np.float32)), 0, 1)
    difference = _as(resize(photo, (600, 560), "bicubic"), np.float32) - sharp.reshape(600, 560, channels)
    exact = _atrous_low(difference, 5, decimate=False)
    fast = _atrous_low(difference, 5)
    assert fast.shape == exact.shape == (600, 560, channels)
    reach = 2**5 - 1
    # Edges are computed at full resolution: the same values.
    np.testing.assert_allclose(fast[:reach], exact[:reach], atol=1e-6)
    np.testing.assert_allclose(fast[-reach:], exact[-reach:], atol=1e-6)
    np.testing.assert_allclose(fast[:, :reach], exact[:, :reach], atol=1e-6)
    np.testing.assert_allclose(fast[:, -reach:], exact[:, -reach:], atol=1e-6)
    assert np.abs(fast - exact).max() < 0.5 / 255  # interior: under half an 8-bit level


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("layout", ["rgb", "gray", "rgba"])
def test_wavelet_in_pixel_units_matches_the_float_route(shifted: np.ndarray, astronaut: np.ndarray,
                                                        dtype: type, layout: str) -> None:
    def shaped(image: np.ndarray) -> np.ndarray:
        if layout == "gray":
            return image[..., 0]
        return np.dstack([image, image[..., :1]]) if layout == "rgba" else image

    output = shaped(_as(shifted, dtype))
    fixed = wavelet_color_fix(output, shaped(_as(astronaut, dtype)))  # one integer dtype: pixel units
    # The same reference picture in another dtype takes the [0, 1] float route.
    other = np.uint16 if dtype == np.uint8 else np.float32
    via_float = wavelet_color_fix(output, shaped(_as(astronaut, other)))
    assert fixed.shape == output.shape and fixed.dtype == dtype
    if layout == "rgba":
        np.testing.assert_array_equal(fixed[..., 3], output[..., 3])
    difference = np.abs(fixed.astype(np.int64) - via_float)
    # One level where float32 rounding puts a value on the other side of a half: rare in
    # 8 bits, ~0.2 % of 16-bit values (float32 holds a 16-bit value to ~0.004 of a level).
    assert difference.max() <= 1 and (difference > 0).mean() < (1e-4 if dtype == np.uint8 else 5e-3)


def test_wavelet_takes_low_from_reference_high_from_output(
    shifted: np.ndarray, astronaut: np.ndarray
) -> None:
    def low(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(_as(z, np.float32), (0, 0), 8)

    def high(z: np.ndarray) -> np.ndarray:
        return _as(z, np.float32) - low(z)

    def dist(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x - y).mean())

    # Output: reference colours, and its own (stronger, red-boosted) detail.
    out = wavelet_color_fix(shifted, astronaut)
    assert dist(low(out), low(astronaut)) < 0.15 * dist(low(shifted), low(astronaut))
    assert dist(high(out), high(shifted)) < 0.25 * dist(high(astronaut), high(shifted))


def test_wavelet_levels_validated(shifted: np.ndarray, astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="levels"):
        wavelet_color_fix(shifted, astronaut, levels=0)
    # One level: only the finest detail comes from the output.
    assert wavelet_color_fix(shifted, astronaut, levels=1).shape == shifted.shape


def test_adain_doc_example() -> None:
    flat, ref = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 100, np.uint8)
    out = correct_color(flat, ref, "adain")
    np.testing.assert_array_equal(out, 100)


# --- exceptions -------------------------------------------------------------


@pytest.mark.parametrize("method", COLOR_METHODS)
def test_size_mismatch_raises_with_shapes(astronaut: np.ndarray, method: ColorMethod) -> None:
    small = astronaut[:256, :300]
    with pytest.raises(ValueError, match=re.escape(str(small.shape))):
        correct_color(astronaut, small, method)


def test_gray_vs_rgb_raises(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"gray.*\(512, 512\)"):
        correct_color(astronaut[..., 0], astronaut, "adain")


def test_bad_shape_raises(astronaut: np.ndarray) -> None:
    two = astronaut[..., :2]
    with pytest.raises(ValueError, match=re.escape(str(two.shape))):
        histogram_match(two, two)


def test_bad_dtype_raises(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="float64"):
        reinhard_lab(astronaut.astype(np.float64), astronaut)


def test_unknown_method_raises(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="histogram"):
        correct_color(astronaut, astronaut, "lab")  # type: ignore[arg-type]
