"""Real-ESRGAN-style synthetic degradation: make a low-res input from a clean image.

Validation runs need (low-res, high-res) pairs whose low-res side looks like
real-world inputs, not a clean bicubic downscale. The recipe and its parameter
ranges follow Real-ESRGAN (Wang, Xie, Dong, Shan, "Real-ESRGAN: Training
Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021,
Sec. 3 and its released training options). This is an independent, simplified
numpy/OpenCV implementation; no code is copied from that project.

Steps, on float32 RGB in [0, 1] (noise sigmas below are in 8-bit units, /255):

1. First order
   - blur: isotropic Gaussian, kernel size odd in [7, 21], sigma ~ U[0.2, 3.0];
   - resize by f relative to the current size: up (p 0.2) f ~ U[1, 1.5],
     down (p 0.7) f ~ U[0.15, 1], keep (p 0.1); method ~ {area, bilinear, bicubic};
   - Gaussian noise, sigma ~ U[1, 30]; gray noise (same on all channels) with p 0.4;
   - JPEG, quality ~ U{30..95} (only when a second order follows; see 3).
2. Second order (``second_order=True``), milder
   - blur with p 0.8: kernel size odd in [7, 21], sigma ~ U[0.2, 1.5];
   - resize by f relative to the *target* size: up (p 0.3) f ~ U[1, 1.2],
     down (p 0.4) f ~ U[0.3, 1], keep (p 0.3); method as above;
   - Gaussian noise, sigma ~ U[1, 25]; gray noise with p 0.4.
3. Final: resize to exactly ``(round(H / scale), round(W / scale))`` (random
   method) and JPEG (quality ~ U{30..95}), in random order (p 0.5 each), as
   Real-ESRGAN does. A first-order-only run thus gets one JPEG pass.

Left out of Real-ESRGAN's recipe: anisotropic, generalized and plateau
Gaussian kernels, sinc (ringing) filters, and Poisson noise.

JPEG works on 8 bits, so uint16/float inputs come back with 8-bit precision
(it is part of the degradation); the dtype is kept. An alpha channel is not
degraded, only area-resized to the output size. Every random draw comes from
``np.random.default_rng(seed)`` in a fixed order, so a seed gives one result.
"""

from __future__ import annotations

import cv2
import numpy as np

from raysr.imageops._checks import check_image, from_float01, merge_alpha, split_alpha, to_float01
from raysr.imageops.resize import ResizeMethod, resize

_RESIZE_CHOICES: tuple[ResizeMethod, ...] = ("area", "bilinear", "bicubic")
_KERNEL_SIZES = np.arange(7, 22, 2)  # odd sizes 7..21
_JPEG_QUALITY = (30, 95)
_GRAY_NOISE_P = 0.4


def _blur(x: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float]) -> np.ndarray:
    ksize = int(rng.choice(_KERNEL_SIZES))
    sigma = float(rng.uniform(*sigma_range))
    out = cv2.GaussianBlur(x, (ksize, ksize), sigma)
    return out[..., None] if out.ndim == 2 else out


def _random_resize(
    x: np.ndarray,
    rng: np.random.Generator,
    base_hw: tuple[int, int],
    probs: tuple[float, float, float],
    up: tuple[float, float],
    down: tuple[float, float],
) -> np.ndarray:
    """Resize to ``base_hw * f`` with f drawn up/down/keep per ``probs``, random method."""
    mode = rng.choice(3, p=probs)
    f = rng.uniform(*up) if mode == 0 else rng.uniform(*down) if mode == 1 else 1.0
    method = _RESIZE_CHOICES[int(rng.integers(len(_RESIZE_CHOICES)))]
    size = (max(1, round(base_hw[0] * f)), max(1, round(base_hw[1] * f)))
    return resize(x, size, method)


def _noise(x: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float]) -> np.ndarray:
    sigma = rng.uniform(*sigma_range) / 255.0
    gray = rng.random() < _GRAY_NOISE_P
    shape = (*x.shape[:2], 1) if gray else x.shape
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(x + noise, 0.0, 1.0)


def _jpeg(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1))
    u8 = from_float01(x, np.uint8)
    # cv2 encodes BGR: passing RGB would apply the YCbCr weights of R to B.
    bgr = u8[..., 0] if u8.shape[2] == 1 else np.ascontiguousarray(u8[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 only fails here on corrupt input
        raise RuntimeError(f"JPEG encoding failed for shape {x.shape}")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    dec = dec[..., None] if dec.ndim == 2 else dec[..., ::-1]
    return to_float01(dec)


def degrade(image: np.ndarray, scale: int, seed: int, second_order: bool = False) -> np.ndarray:
    """Blur, resize, add noise and JPEG-compress ``image`` into a low-res input.

    Args:
        image: clean high-res ``(H, W[, C])``, ``uint8|uint16|float32``, RGB(A) or gray.
        scale: downscale factor, int >= 1.
        seed: non-negative int; the same seed gives the same output.
        second_order: add Real-ESRGAN's second, milder degradation round.

    Returns:
        ``(round(H / scale), round(W / scale)[, C])`` with the input's dtype
        and layout; alpha only resized.

    Raises:
        ValueError: bad image, ``scale`` or ``seed``, or an output under 1 pixel.

    Examples:
        >>> hr = np.full((64, 48, 3), 128, np.uint8)
        >>> degrade(hr, scale=4, seed=0).shape
        (16, 12, 3)
    """
    check_image(image)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    target = (round(image.shape[0] / scale), round(image.shape[1] / scale))
    if min(target) < 1:
        raise ValueError(
            f"image of shape {image.shape} is too small for scale {scale}: output would be {target}"
        )

    rng = np.random.default_rng(seed)
    color, alpha = split_alpha(image)
    x = to_float01(color)

    # 1. First order.
    x = _blur(x, rng, (0.2, 3.0))
    x = _random_resize(x, rng, x.shape[:2], (0.2, 0.7, 0.1), up=(1.0, 1.5), down=(0.15, 1.0))
    x = _noise(x, rng, (1.0, 30.0))

    # 2. Second order, milder; resized relative to the target size.
    if second_order:
        x = _jpeg(x, rng)
        if rng.random() < 0.8:
            x = _blur(x, rng, (0.2, 1.5))
        x = _random_resize(x, rng, target, (0.3, 0.4, 0.3), up=(1.0, 1.2), down=(0.3, 1.0))
        x = _noise(x, rng, (1.0, 25.0))

    # 3. Final resize to the exact target and JPEG, in random order.
    method = _RESIZE_CHOICES[int(rng.integers(len(_RESIZE_CHOICES)))]
    if rng.random() < 0.5:
        x = _jpeg(resize(x, target, method), rng)
    else:
        x = resize(_jpeg(x, rng), target, method)

    small_alpha = None if alpha is None else resize(alpha, target, "area")
    return merge_alpha(from_float01(x, image.dtype), small_alpha, image)
