"""Tests for raysr.imageops.degrade."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage import data

from raysr.imageops.degrade import degrade
from raysr.imageops.metrics import psnr, sharpness, ssim
from raysr.imageops.resize import resize
from factories import as_dtype as _as


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3) uint8


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return data.chelsea()  # (300, 451, 3) uint8


# --- shapes and dtypes ------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("second_order", [False, True])
def test_output_size(chelsea: np.ndarray, scale: int, second_order: bool) -> None:
    out = degrade(chelsea, scale, seed=3, second_order=second_order)
    assert out.shape == (round(300 / scale), round(451 / scale), 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtype_kept(chelsea: np.ndarray, dtype: type) -> None:
    out = degrade(_as(chelsea, dtype), 2, seed=0, second_order=True)
    assert out.dtype == dtype
    if dtype == np.float32:
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 1)])
def test_gray_layouts(shape: tuple[int, ...]) -> None:
    gray = data.camera()[: shape[0], : shape[1]].reshape(shape)
    out = degrade(gray, 4, seed=1, second_order=True)
    assert out.shape == (16, 20, *shape[2:])


def test_alpha_only_resized(chelsea: np.ndarray) -> None:
    alpha = np.zeros(chelsea.shape[:2] + (1,), np.uint8)
    alpha[:, :200] = 255
    out = degrade(np.concatenate([chelsea, alpha], axis=2), 4, seed=2, second_order=True)
    assert out.shape == (75, 113, 4)
    np.testing.assert_array_equal(out[..., 3:], resize(alpha, (75, 113), "area"))


def test_input_not_modified(astronaut: np.ndarray) -> None:
    before = astronaut.copy()
    degrade(astronaut, 4, seed=0, second_order=True)
    np.testing.assert_array_equal(astronaut, before)


# --- determinism ------------------------------------------------------------


@pytest.mark.parametrize("second_order", [False, True])
def test_same_seed_same_output(astronaut: np.ndarray, second_order: bool) -> None:
    a = degrade(astronaut, 4, seed=42, second_order=second_order)
    b = degrade(astronaut, 4, seed=42, second_order=second_order)
    np.testing.assert_array_equal(a, b)


def test_different_seeds_differ(astronaut: np.ndarray) -> None:
    outs = [degrade(astronaut, 4, seed=s) for s in range(4)]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not np.array_equal(outs[i], outs[j])
    second = degrade(astronaut, 4, seed=0, second_order=True)
    assert not np.array_equal(outs[0], second)


# --- known behaviour --------------------------------------------------------


def test_degraded_but_recognisable(astronaut: np.ndarray) -> None:
    clean = resize(astronaut, (128, 128), "area")
    first = [degrade(astronaut, 4, seed=s) for s in range(6)]
    second = [degrade(astronaut, 4, seed=s, second_order=True) for s in range(6)]
    for out in first + second:
        # Worse than a clean downscale, but the same picture.
        assert 12 < psnr(out, clean) < 40
        assert ssim(out, clean) > 0.3
    # Two rounds of degradation hurt more on average than one.
    assert np.mean([psnr(o, clean) for o in second]) < np.mean([psnr(o, clean) for o in first])


def test_scale_one_still_degrades(astronaut: np.ndarray) -> None:
    out = degrade(astronaut, 1, seed=5)
    assert out.shape == astronaut.shape
    assert psnr(out, astronaut) < 40
    assert sharpness(out) != sharpness(astronaut)


# --- exceptions -------------------------------------------------------------


@pytest.mark.parametrize("scale", [0, -2, 2.0, True, "4"])
def test_bad_scale_raises(chelsea: np.ndarray, scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        degrade(chelsea, scale, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 1.5, None, False])
def test_bad_seed_raises(chelsea: np.ndarray, seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        degrade(chelsea, 2, seed=seed)  # type: ignore[arg-type]


def test_too_small_raises() -> None:
    tiny = np.zeros((3, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=re.escape("(3, 40, 3)")):
        degrade(tiny, 8, seed=0)


def test_bad_shape_raises() -> None:
    bad = np.zeros((32, 32, 2), np.uint8)
    with pytest.raises(ValueError, match=re.escape("(32, 32, 2)")):
        degrade(bad, 2, seed=0)
