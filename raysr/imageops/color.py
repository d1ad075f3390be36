"""Colour correction of a super-resolved image against a reference.

SR models drift in colour (tint, contrast, saturation). The reference is the
input upscaled with a plain interpolator (bicubic) to the output's size: its
colours are right, its detail is not. Each method keeps the output's detail
and takes some statistic of the colour from the reference:

- ``histogram``: per-channel CDF matching (exact histogram specification).
- ``reinhard``: mean/std transfer in CIE LAB (Reinhard et al., 2001,
  "Color Transfer between Images").
- ``wavelet``: low frequencies from the reference, high from the output; the
  fix StableSR (Wang et al., 2023) applies after diffusion SR, idea from
  https://github.com/IceClear/StableSR/blob/4b2ac150d288976f7c27cabe58eee16b447f8ce8/scripts/wavelet_color_fix.py
  This is an independent numpy implementation of the standard "à trous"
  decomposition (Starck & Murtagh), no code taken from there.
- ``adain``: per-channel mean/std transfer in RGB (AdaIN, Huang & Belongie, 2017).

All methods work on float32 in [0, 1]; the output keeps the dtype and layout
of ``output``; an alpha channel (C = 4) is passed through untouched; gray
images ((H, W) or (H, W, 1)) are supported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

from raysr.imageops._checks import check_pair, from_float01, merge_alpha, split_alpha, to_float01

ColorMethod = Literal["none", "histogram", "reinhard", "wavelet", "adain"]

COLOR_METHODS: tuple[ColorMethod, ...] = ("none", "histogram", "reinhard", "wavelet", "adain")

# Below this std a channel is flat: scaling it would amplify noise/rounding by
# ~1/std, so flat channels get their mean shifted only.
_FLAT_STD = 1e-6

# Histogram bins for float inputs: 16-bit resolution, so uint16 sources are
# matched exactly and float ones to within 1.5e-5.
_FLOAT_LEVELS = 65536


def _correct(
    output: np.ndarray, reference: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Shared frame: check, drop alpha, go to float [0, 1], apply ``fn``, come back."""
    check_pair(output, reference, ("output", "reference"))
    out_color, alpha = split_alpha(output)
    ref_color, _ = split_alpha(reference)
    fixed = fn(to_float01(out_color), to_float01(ref_color))
    return merge_alpha(from_float01(fixed, output.dtype), alpha, output)


def _transfer_moments(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Give each channel of ``x`` (H, W, c) the mean and std of the same channel of ``ref``."""
    mu_x, sd_x = x.mean(axis=(0, 1)), x.std(axis=(0, 1))
    mu_r, sd_r = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    gain = np.where(sd_x > _FLAT_STD, sd_r / np.maximum(sd_x, _FLAT_STD), 1.0)
    return ((x - mu_x) * gain + mu_r).astype(np.float32)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) float32 [0, 1] to (H, W, 3) LAB (L in [0, 100]); gray is taken as R=G=B."""
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)


def _match_channel(src: np.ndarray, tmpl: np.ndarray, levels: int, exact: bool) -> np.ndarray:
    """CDF-match one channel (float [0, 1]) of ``src`` to ``tmpl`` on ``levels`` bins."""
    scale = levels - 1
    src_idx = np.rint(src * scale).astype(np.int64).clip(0, scale).ravel()
    tmpl_idx = np.rint(tmpl * scale).astype(np.int64).clip(0, scale).ravel()
    src_cdf = np.cumsum(np.bincount(src_idx, minlength=levels)) / src_idx.size
    tmpl_counts = np.bincount(tmpl_idx, minlength=levels)
    # np.interp needs strictly increasing xp: keep only the template's occupied bins.
    tmpl_vals = np.flatnonzero(tmpl_counts)
    tmpl_cdf = np.cumsum(tmpl_counts[tmpl_vals]) / tmpl_idx.size
    lut = np.interp(src_cdf, tmpl_cdf, tmpl_vals) / scale
    if exact:  # integer source: every value sits on a bin
        return lut[src_idx].reshape(src.shape).astype(np.float32)
    # Float source: interpolate the lookup table between bins so the map stays continuous.
    return np.interp(src * scale, np.arange(levels), lut).astype(np.float32)


def histogram_match(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Match each colour channel's histogram of ``output`` to ``reference``.

    The same mapping as ``skimage.exposure.match_histograms`` (source CDF ->
    template quantile, linear interpolation), computed with ``np.bincount``
    over 256 (uint8) or 65536 (uint16, float32) levels, so it costs O(N)
    and no sort.

    Args:
        output: ``(H, W[, C])`` ``uint8|uint16|float32``, RGB(A) or gray.
        reference: same ``(H, W)`` and colour channels, any supported dtype.

    Returns:
        Same shape and dtype as ``output``; alpha copied unchanged.
    """
    levels = 256 if output.dtype == np.uint8 else _FLOAT_LEVELS
    exact = output.dtype != np.float32

    def fn(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        chans = [_match_channel(x[..., c], ref[..., c], levels, exact) for c in range(x.shape[2])]
        return np.stack(chans, axis=2)

    return _correct(output, reference, fn)


def reinhard_lab(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Transfer per-channel mean and std of ``reference`` to ``output`` in CIE LAB.

    LAB comes from ``cv2.cvtColor`` on float32 RGB in [0, 1] (sRGB, D65).
    Gray images carry only L, so only L is transferred.

    Args:
        output: ``(H, W[, C])`` ``uint8|uint16|float32``, RGB(A) or gray.
        reference: same ``(H, W)`` and colour channels, any supported dtype.

    Returns:
        Same shape and dtype as ``output``; alpha copied unchanged. Values
        that leave the RGB gamut are clipped, so the moments match closely,
        not exactly.
    """

    def fn(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        lab = _transfer_moments(_to_lab(x), _to_lab(ref))
        if x.shape[2] == 1:
            lab[..., 1:] = 0.0  # keep gray neutral: a, b of R=G=B are 0
        rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        return rgb[..., :1] if x.shape[2] == 1 else rgb

    return _correct(output, reference, fn)


def adain(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Transfer per-channel mean and std of ``reference`` to ``output`` in RGB.

    Args:
        output: ``(H, W[, C])`` ``uint8|uint16|float32``, RGB(A) or gray.
        reference: same ``(H, W)`` and colour channels, any supported dtype.

    Returns:
        Same shape and dtype as ``output``; alpha copied unchanged.
    """
    return _correct(output, reference, _transfer_moments)


# The à-trous levels 0 and 1 run on every pixel; by then the signal is smooth (Gaussian-like,
# σ ≈ 1.6 px), so the coarser levels (taps ≥ 4 px apart) run on a 4× area-decimated copy and
# their low band comes back bilinearly. Borders are the exception: each level replicates its
# edge pixel, which weighs heavily there (a border rule of "pad once" moves the low band by up to
# 8 levels), so pixels within the cascade's reach of an edge (2**levels - 1 px) are recomputed at
# full resolution on edge strips. Against the full-resolution cascade on x4plus outputs: interior
# within 0.3 of an 8-bit level, edges exact; 2.5× faster on a 2048² output, where the dilated taps
# of the coarse levels were most of the colour stage's time.
_FULL_RESOLUTION_LEVELS = 2
_DECIMATION = 4
_MIN_DECIMATED_SIDE = 32  # below this (on the decimated copy) the cascade runs at full resolution


def _with_channel_axis(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x  # cv2 drops the axis of one channel


def _atrous_blur(x: np.ndarray, step: int) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with taps ``step`` pixels apart; replicate border.

    x: (H, W, c) float32. The 3x3 outer product is the kernel StableSR uses, here as
    OpenCV's separable filter with the taps dilated (zeros between them): SIMD and
    multi-threaded, 2.7× the numpy slicing it replaces on a 2048² image.
    """
    taps = np.zeros(2 * step + 1, np.float32)
    taps[[0, step, 2 * step]] = 0.25, 0.5, 0.25
    return _with_channel_axis(cv2.sepFilter2D(x, -1, taps, taps, borderType=cv2.BORDER_REPLICATE))


def _atrous_cascade(x: np.ndarray, levels: int, first_level: int = 0, step_divisor: int = 1) -> np.ndarray:
    low = x
    for level in range(first_level, levels):
        low = _atrous_blur(low, 2**level // step_divisor)
    return low


def _atrous_low(x: np.ndarray, levels: int, decimate: bool = True) -> np.ndarray:
    """The low band of ``levels`` à-trous levels of (H, W, c) float32 (any range).

    ``decimate=False`` runs every level on every pixel: the definition, and the
    reference the decimated path is tested against.
    """
    height, width = x.shape[:2]
    small_size = (round(width / _DECIMATION), round(height / _DECIMATION))
    reach = 2**levels - 1  # how far a pixel of the low band sees
    if (not decimate or levels <= _FULL_RESOLUTION_LEVELS or min(small_size) < _MIN_DECIMATED_SIDE
            or 2 * reach >= min(height, width)):  # edge strips would span the image: one exact pass is less
        return _atrous_cascade(x, levels)
    fine = _atrous_cascade(x, _FULL_RESOLUTION_LEVELS)
    small = _with_channel_axis(cv2.resize(fine, small_size, interpolation=cv2.INTER_AREA))
    small = _atrous_cascade(small, levels, _FULL_RESOLUTION_LEVELS, _DECIMATION)
    low = _with_channel_axis(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))
    # Edge strips: the band next to an edge is exact when the strip also holds the band's
    # reach inward (the strip's cut edge disturbs only pixels within that reach of it).
    strip = 2 * reach
    low[:reach] = _atrous_cascade(x[:strip], levels)[:reach]
    low[-reach:] = _atrous_cascade(x[-strip:], levels)[-reach:]
    low[:, :reach] = _atrous_cascade(x[:, :strip], levels)[:, :reach]
    low[:, -reach:] = _atrous_cascade(x[:, -strip:], levels)[:, -reach:]
    return low


def wavelet_decompose(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Split (H, W, c) float32 into ``(high, low)`` with ``high + low == x`` (up to rounding).

    "À trous" (with holes) scheme: level ``i`` blurs the previous low-pass with
    the 3-tap kernel dilated by ``2**i``, so the blur radius doubles per level
    without downsampling; ``high`` is the sum of the detail layers removed. On
    images of 128 px a side or more, levels from 2 on run on a 4× decimated
    copy away from the edges (see ``_FULL_RESOLUTION_LEVELS``).
    """
    low = _atrous_low(x, levels)
    # The detail layers telescope: their sum is simply x - final low.
    return x - low, low


def wavelet_color_fix(output: np.ndarray, reference: np.ndarray, levels: int = 5) -> np.ndarray:
    """Keep the high frequencies of ``output`` and take the low ones from ``reference``.

    With ``levels=5`` the low-pass keeps structures larger than roughly
    2**levels = 32 pixels: colour casts, shading, large flat areas.

    Args:
        output: ``(H, W[, C])`` ``uint8|uint16|float32``, RGB(A) or gray.
        reference: same ``(H, W)`` and colour channels, any supported dtype.
        levels: number of à trous levels, >= 1; more levels move the split
            towards coarser structures.

    Returns:
        Same shape and dtype as ``output``; alpha copied unchanged.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")

    # high(x) + low(ref) = x + low(ref - x): the blur is linear, so one decomposition does.
    if output.dtype == reference.dtype and output.dtype in (np.uint8, np.uint16):
        return _wavelet_fix_in_pixel_units(output, reference, levels)

    def fn(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return x + _atrous_low(ref - x, levels)

    return _correct(output, reference, fn)


def _wavelet_fix_in_pixel_units(output: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
    """The wavelet fix of two uint8 (or two uint16) images in their own units.

    OpenCV subtracts into float32 and adds back with rounding and saturation, two passes
    instead of float copies of both images in [0, 1] and a rounding pass (2× on a 2048²
    output). Against the [0, 1] route: at most one level apart, where float32 rounding puts
    a value on the other side of a half (~5e-6 of 8-bit values, ~0.2 % of 16-bit ones).
    """
    check_pair(output, reference, ("output", "reference"))
    out_color, alpha = split_alpha(output)
    ref_color, _ = split_alpha(reference)
    difference = _with_channel_axis(cv2.subtract(ref_color, out_color, dtype=cv2.CV_32F))
    depth = cv2.CV_8U if output.dtype == np.uint8 else cv2.CV_16U
    fixed = _with_channel_axis(cv2.add(out_color, _atrous_low(difference, levels), dtype=depth))
    return merge_alpha(fixed, alpha, output)


_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "histogram": histogram_match,
    "reinhard": reinhard_lab,
    "wavelet": wavelet_color_fix,
    "adain": adain,
}


def correct_color(output: np.ndarray, reference: np.ndarray, method: ColorMethod) -> np.ndarray:
    """Colour-correct ``output`` against ``reference`` with one of :data:`COLOR_METHODS`.

    Args:
        output: SR result ``(H, W[, C])``, ``uint8|uint16|float32``, RGB(A) or gray.
        reference: input upscaled to the same ``(H, W)`` (e.g. bicubic), same
            colour channels, any supported dtype.
        method: ``"none"`` returns a copy of ``output`` (after the checks).

    Returns:
        Same shape and dtype as ``output``.

    Examples:
        >>> out = np.full((8, 8, 3), 200, np.uint8)
        >>> ref = np.full((8, 8, 3), 100, np.uint8)
        >>> int(correct_color(out, ref, "adain")[0, 0, 0])
        100
    """
    if method == "none":
        check_pair(output, reference, ("output", "reference"))
        return output.copy()
    if method not in _METHODS:
        raise ValueError(f"method must be one of {COLOR_METHODS}, got {method!r}")
    return _METHODS[method](output, reference)
