"""Tests for raysr.imageops.resize."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage import data

from raysr.imageops.resize import RESIZE_METHODS, ResizeMethod, resize
from factories import as_dtype as _as

DTYPES = (np.uint8, np.uint16, np.float32)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return data.chelsea()  # (300, 451, 3) uint8


# --- smoke and shapes -------------------------------------------------------


@pytest.mark.parametrize("method", RESIZE_METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_and_dtype_kept(chelsea: np.ndarray, method: ResizeMethod, dtype: type) -> None:
    img = _as(chelsea, dtype)
    out = resize(img, (150, 200), method)
    assert out.shape == (150, 200, 3)
    assert out.dtype == dtype


@pytest.mark.parametrize("method", RESIZE_METHODS)
@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1), (20, 30, 3), (20, 30, 4)])
def test_layouts(method: ResizeMethod, shape: tuple[int, ...]) -> None:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = resize(img, (41, 9), method)
    # (H, W, 1) must not be squeezed to (H, W) as cv2.resize does.
    assert out.shape == (41, 9, *shape[2:])


def test_non_contiguous_input(chelsea: np.ndarray) -> None:
    bgr_view = chelsea[:, ::2, ::-1]
    out = resize(bgr_view, (100, 100), "area")
    assert out.shape == (100, 100, 3)


# --- known values -----------------------------------------------------------


@pytest.mark.parametrize("method", RESIZE_METHODS)
def test_constant_stays_constant(method: ResizeMethod) -> None:
    img = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize(img, (40, 7), method), 77)


def test_nearest_upscale_repeats_pixels() -> None:
    img = np.array([[0, 50], [100, 150]], np.uint8)
    expected = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(resize(img, (4, 4), "nearest"), expected)


def test_area_downscale_is_block_mean() -> None:
    img = np.random.default_rng(1).random((8, 6, 3), dtype=np.float32)
    expected = img.reshape(4, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(img, (4, 3), "area"), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
def test_float_overshoot_clipped(method: ResizeMethod) -> None:
    step = np.zeros((8, 8), np.float32)
    step[:, 4:] = 1.0
    out = resize(step, (32, 32), method)
    assert out.min() >= 0.0 and out.max() <= 1.0


# --- round trip -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest_up_area_down_round_trip(chelsea: np.ndarray, dtype: type) -> None:
    img = _as(chelsea, dtype)
    up = resize(img, (600, 902), "nearest")
    np.testing.assert_array_equal(resize(up, (300, 451), "area"), img)


# --- exceptions -------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10, 2), np.uint8),
        np.zeros((2, 10, 10, 3), np.uint8),
        np.zeros((10,), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
    ],
)
def test_bad_shape_raises_with_shape(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match=re.escape(str(image.shape))):
        resize(image, (5, 5), "area")


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int8, bool])
def test_bad_dtype_raises(dtype: type) -> None:
    with pytest.raises(ValueError, match="dtype"):
        resize(np.zeros((10, 10, 3), dtype), (5, 5), "area")


def test_not_an_array_raises() -> None:
    with pytest.raises(ValueError, match="numpy array"):
        resize([[0, 1], [2, 3]], (5, 5), "area")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(0, 5), (5, -1), (5.0, 5), (5,), (5, 5, 5), (True, 5), "55"])
def test_bad_size_raises(size: object) -> None:
    with pytest.raises(ValueError, match="size_hw"):
        resize(np.zeros((10, 10), np.uint8), size, "area")  # type: ignore[arg-type]


def test_bad_method_raises() -> None:
    with pytest.raises(ValueError, match="bicubic"):
        resize(np.zeros((10, 10), np.uint8), (5, 5), "cubic")  # type: ignore[arg-type]

