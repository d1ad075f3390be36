"""Image quality metrics for SR outputs: PSNR, SSIM, LR consistency, sharpness, ΔE.

Conventions (they change the numbers, so they are fixed here):

- Inputs are scaled to [0, 1] (uint8 / 255, uint16 / 65535) before comparing,
  so images of different dtypes can be compared; alpha is ignored.
- :func:`psnr` is over all colour channels (like ``skimage.metrics.
  peak_signal_noise_ratio``), not on Y and with no border crop as BasicSR does.
- :func:`ssim` is Wang et al. 2004 ("Image Quality Assessment: From Error
  Visibility to Structural Similarity"): 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, population (not sample) covariances, mean over the
  "valid" region (a 5-pixel border dropped), like their MATLAB ``ssim_index``
  and ``skimage.metrics.structural_similarity(gaussian_weights=True,
  use_sample_covariance=False)``. Colour images are compared on full-range
  BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B in [0, 1], not on BasicSR's
  studio-swing Y in [16, 235], so scores differ slightly from BasicSR's.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from raysr.imageops._checks import check_image, check_pair, split_alpha, to_float01
from raysr.imageops.resize import resize

# BT.601 luma weights for gamma-encoded R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an image, alpha ignored.

    Args:
        image: ``(H, W[, C])`` ``uint8|uint16|float32``; RGB(A) or gray.

    Returns:
        ``(H, W)`` float64 in [0, 1]; for gray input, the gray values scaled to [0, 1].
    """
    return _luma32(image).astype(np.float64)


def _luma32(image: np.ndarray) -> np.ndarray:
    """:func:`luminance` in float32: the weighted sum by OpenCV (SIMD), 7× the float64 matmul
    on a 2048² output, the same luma to ~1e-7."""
    check_image(image)
    color, _ = split_alpha(image)
    x = to_float01(color)
    if x.shape[2] == 1:
        return x[..., 0]
    return cv2.transform(x, _LUMA[None].astype(np.float32))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all colour channels.

    Args:
        a, b: ``(H, W[, C])`` images with the same ``(H, W)`` and colour
            channels; ``uint8|uint16|float32``; alpha ignored.
        data_range: peak value in the units of the inputs, which must then
            share a dtype. ``None`` compares both on the [0, 1] scale
            (peak 1), which equals using the dtype's own range.

    Returns:
        ``10 * log10(peak**2 / MSE)``; ``inf`` when the images are identical.

    Examples:
        >>> a = np.zeros((4, 4), np.uint8)
        >>> round(psnr(a, a + 10), 2)  # MSE 100: 10 * log10(255**2 / 100)
        28.13
    """
    check_pair(a, b)
    ca, cb = split_alpha(a)[0], split_alpha(b)[0]
    if data_range is None:
        xa, xb, peak = to_float01(ca, np.float64), to_float01(cb, np.float64), 1.0
    else:
        if a.dtype != b.dtype:
            raise ValueError(
                f"with data_range set, a and b must share a dtype, got {a.dtype} and {b.dtype}; "
                "leave data_range=None to compare on the [0, 1] scale"
            )
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range!r}")
        xa, xb, peak = ca.astype(np.float64), cb.astype(np.float64), float(data_range)
    mse = float(np.mean((xa - xb) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak**2 / mse)


def _ssim_gray(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two (H, W) float64 images in [0, 1] (data range 1)."""
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    # Border pixels saw padding, not image: keep only windows fully inside.
    r = _SSIM_WIN // 2
    return float(np.mean((num / den)[r:-r, r:-r]))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) on luma; see the module docstring.

    Args:
        a, b: ``(H, W[, C])`` images with the same ``(H, W)`` and colour
            channels, both sides at least 11 pixels; ``uint8|uint16|float32``
            (dtypes may differ); alpha ignored.

    Returns:
        Mean SSIM, 1.0 for identical images, lower (down to -1) otherwise.
    """
    check_pair(a, b)
    if min(a.shape[:2]) < _SSIM_WIN:
        raise ValueError(
            f"ssim needs images of at least {_SSIM_WIN}x{_SSIM_WIN} pixels, got shape {a.shape}"
        )
    return _ssim_gray(luminance(a), luminance(b))


def lr_consistency(output: np.ndarray, input_image: np.ndarray) -> dict[str, float]:
    """How well the SR output, downscaled back, agrees with its low-res input.

    The output is resized to the input's ``(H, W)`` with area averaging, then
    compared with :func:`psnr` and :func:`ssim`. A faithful SR model scores high;
    hallucinated or shifted content scores low.

    Args:
        output: SR image ``(sH, sW[, C])``; ``uint8|uint16|float32``.
        input_image: the low-res input ``(H, W[, C])``, same colour channels,
            at least 11x11; any supported dtype.

    Returns:
        ``{"psnr": dB, "ssim": [-1, 1]}``.
    """
    check_image(output, "output")
    check_image(input_image, "input_image")
    down = resize(output, input_image.shape[:2], "area")
    check_pair(down, input_image, ("output", "input_image"))
    return {"psnr": psnr(down, input_image), "ssim": ssim(down, input_image)}


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the luma in [0, 1]: higher is sharper.

    Only comparable between images of the same content and size: noise also
    raises it, and downscaling raises it.

    Args:
        image: ``(H, W[, C])`` ``uint8|uint16|float32``; alpha ignored.

    Returns:
        Non-negative float; 0.0 for a flat image.
    """
    lap = cv2.Laplacian(_luma32(image), cv2.CV_32F)  # float32 per pixel, float64 for the variance
    return float(lap.var(dtype=np.float64))


def _lab(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 CIE LAB (L in [0, 100]) of an image; gray taken as R=G=B."""
    color, _ = split_alpha(image)
    x = to_float01(color)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return cv2.cvtColor(x, cv2.COLOR_RGB2LAB)


def mean_delta_e(a: np.ndarray, b: np.ndarray, max_pixels: int | None = None) -> float:
    """Mean CIE76 colour difference: Euclidean distance in LAB, averaged over pixels.

    LAB comes from ``cv2.cvtColor`` on float32 RGB in [0, 1] (sRGB, D65).
    Rule of thumb: ΔE < 1 is invisible, 2-3 is noticeable side by side.

    Args:
        a, b: ``(H, W[, C])`` images with the same ``(H, W)`` and colour
            channels; ``uint8|uint16|float32`` (dtypes may differ); alpha ignored.
        max_pixels: average over every k-th pixel of every k-th row, k the smallest
            stride that leaves at most this many (a 2048² output at ``1 << 20``: every
            2nd); ``None`` averages over all. The LAB conversion is most of the cost,
            and the mean of a million pixels moves by well under 1 % (tested).

    Returns:
        Mean ΔE, 0.0 for identical images.
    """
    check_pair(a, b)
    if max_pixels is not None:
        stride = math.ceil(math.sqrt(a.shape[0] * a.shape[1] / max(max_pixels, 1)))
        a, b = a[::stride, ::stride], b[::stride, ::stride]
    diff = _lab(a) - _lab(b)  # float32 per pixel, float64 for the mean: half the time of all-float64
    return float(np.sqrt(np.einsum("hwc,hwc->hw", diff, diff)).mean(dtype=np.float64))
