"""The one shape/dtype check for ``raysr.imageops``, plus [0, 1] float conversions.

Image convention (every public function in the package follows it):

- layout ``(H, W)`` or ``(H, W, C)`` with ``C`` in {1, 3, 4}; RGB or RGBA order;
- dtype ``uint8`` in [0, 255], ``uint16`` in [0, 65535] or ``float32`` in [0, 1].

Float inputs are *assumed* to lie in [0, 1]; checking would cost a full pass
over every image, so only outputs are clipped (in :func:`from_float01`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGE_DTYPES: tuple[type[np.generic], ...] = (np.uint8, np.uint16, np.float32)
CHANNELS: tuple[int, ...] = (1, 3, 4)

# Peak value of each supported dtype: the scale between it and [0, 1].
_PEAK: dict[np.dtype, float] = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.float32): 1.0,
    np.dtype(np.float64): 1.0,
}


def check_image(
    image: object,
    name: str = "image",
    dtypes: Sequence[type[np.generic]] = IMAGE_DTYPES,
) -> np.ndarray:
    """Check that ``image`` follows the package's image convention and return it.

    Args:
        image: candidate array, ``(H, W)`` or ``(H, W, C)`` with ``C`` in {1, 3, 4}.
        name: argument name used in the error message.
        dtypes: accepted dtypes.

    Returns:
        ``image`` itself (not a copy), so a call can be used inline.

    Raises:
        ValueError: not an ndarray, wrong number of dimensions, channel count,
            empty, or a dtype outside ``dtypes``; the message gives the actual
            shape and dtype.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy array (H, W) or (H, W, C), got {type(image).__name__}"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in CHANNELS):
        raise ValueError(
            f"{name} must have shape (H, W) or (H, W, C) with C in {CHANNELS}, "
            f"got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}")
    if image.dtype not in [np.dtype(d) for d in dtypes]:
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(
            f"{name} must have dtype in ({allowed}), got {image.dtype} with shape {image.shape}"
        )
    return image


def check_pair(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")
) -> tuple[np.ndarray, np.ndarray]:
    """Check two images (see :func:`check_image`) that must be compared pixel for pixel.

    Both must have the same ``(H, W)`` and the same number of colour channels
    once alpha is set aside (``(H, W)`` and ``(H, W, 1)`` count as the same).
    Dtypes may differ: callers compare them on the [0, 1] scale.

    Raises:
        ValueError: naming both arguments and giving both shapes.
    """
    check_image(a, names[0])
    check_image(b, names[1])
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same height and width, "
            f"got shapes {a.shape} and {b.shape}; resize one of them first"
        )
    if color_channels(a) != color_channels(b):
        raise ValueError(
            f"{names[0]} and {names[1]} must both be gray or both be RGB(A), "
            f"got shapes {a.shape} and {b.shape}"
        )
    return a, b


def color_channels(image: np.ndarray) -> int:
    """Number of colour channels, alpha excluded: 1 for gray, 3 for RGB(A)."""
    return 1 if image.ndim == 2 else min(image.shape[2], 3)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an image into ``(H, W, c)`` colour channels and an ``(H, W, 1)`` alpha.

    ``(H, W)`` becomes ``(H, W, 1)`` so callers handle one layout; alpha is
    ``None`` unless ``C == 4``. The returned arrays are views, not copies.
    """
    if image.ndim == 2:
        return image[..., None], None
    if image.shape[2] == 4:
        return image[..., :3], image[..., 3:]
    return image, None


def merge_alpha(
    color: np.ndarray, alpha: np.ndarray | None, like: np.ndarray
) -> np.ndarray:
    """Inverse of :func:`split_alpha`: rebuild the layout of ``like`` from its parts."""
    if alpha is not None:
        return np.concatenate([color, alpha.astype(color.dtype, copy=False)], axis=2)
    if like.ndim == 2:
        return color[..., 0]
    return color


def to_float01(image: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Convert a checked image to float in [0, 1] (a new array, never a view).

    Args:
        image: ``uint8``, ``uint16`` or ``float32``/``float64`` image, any layout.
        dtype: ``float32`` (default) or ``float64`` for metrics that sum a lot.

    Returns:
        Same shape, ``dtype``, values ``image / peak`` where peak is 255, 65535 or 1.
    """
    peak = _PEAK.get(image.dtype)
    if peak is None:
        raise ValueError(f"cannot scale dtype {image.dtype} to [0, 1], shape {image.shape}")
    out = image.astype(dtype, copy=True)
    if peak != 1.0:
        # Divide, not multiply by 1/peak: division is correctly rounded, so
        # v/255 and (257 v)/65535 give the same float and uint8/uint16 copies
        # of one image compare as identical.
        out /= dtype(peak)
    return out


def from_float01(x: np.ndarray, dtype: type[np.generic] | np.dtype) -> np.ndarray:
    """Convert float values in [0, 1] back to ``dtype``, rounding and clipping.

    Args:
        x: float array, any shape; values outside [0, 1] are clipped.
        dtype: ``uint8``, ``uint16`` or ``float32``.

    Returns:
        Same shape, ``dtype``: ``round(x * peak)`` clipped to [0, peak] for
        integers, ``clip(x, 0, 1)`` for ``float32``.
    """
    dtype = np.dtype(dtype)
    peak = _PEAK.get(dtype)
    if peak is None:
        raise ValueError(f"cannot convert [0, 1] floats to dtype {dtype}")
    if dtype.kind == "f":
        return np.clip(x, 0.0, 1.0).astype(dtype, copy=False)
    # Clip before the cast: out-of-range floats would wrap around in astype. In place on
    # one scaled copy: a 2048² RGB output is 50 MB a pass.
    scaled = np.multiply(x, peak, dtype=np.result_type(x.dtype, np.float32))
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0.0, peak, out=scaled)
    return scaled.astype(dtype)
