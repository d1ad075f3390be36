"""Resize images with OpenCV, keeping dtype and channel layout.

``cv2.resize`` has two habits this module hides: it takes the size as
``(width, height)``, and it drops the channel axis of ``(H, W, 1)`` arrays.
Here the size is ``(height, width)`` like ``image.shape[:2]`` and the output
always has the layout of the input.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from raysr.imageops._checks import check_image

ResizeMethod = Literal["bicubic", "lanczos", "area", "bilinear", "nearest"]

RESIZE_METHODS: tuple[ResizeMethod, ...] = ("bicubic", "lanczos", "area", "bilinear", "nearest")

_CV2_FLAGS: dict[str, int] = {
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    # INTER_NEAREST samples with a half-pixel offset bug; NEAREST_EXACT picks
    # the same pixels as PIL and scikit-image.
    "nearest": cv2.INTER_NEAREST_EXACT,
}


def resize(image: np.ndarray, size_hw: tuple[int, int], method: ResizeMethod) -> np.ndarray:
    """Resize ``image`` to ``size_hw`` with OpenCV.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, C in {1, 3, 4}; ``uint8`` [0, 255],
            ``uint16`` [0, 65535] or ``float32`` [0, 1].
        size_hw: output ``(height, width)``, both positive ints.
        method: one of :data:`RESIZE_METHODS`. ``"area"`` is the one to use
            for downscaling (it averages, so it does not alias).

    Returns:
        ``(height, width)`` or ``(height, width, C)`` with the input's layout
        and dtype. Integer results saturate (OpenCV); ``float32`` results are
        clipped to [0, 1] because bicubic/lanczos overshoot at edges.

    Raises:
        ValueError: bad image, size or method.

    Examples:
        >>> img = np.zeros((4, 6, 1), np.uint8)
        >>> resize(img, (8, 12), "bicubic").shape
        (8, 12, 1)
    """
    check_image(image)
    if (
        not isinstance(size_hw, (tuple, list))
        or len(size_hw) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size_hw)
        or min(size_hw) < 1
    ):
        raise ValueError(
            f"size_hw must be a (height, width) pair of positive ints, got {size_hw!r}"
        )
    if method not in _CV2_FLAGS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}, got {method!r}")

    height, width = int(size_hw[0]), int(size_hw[1])
    out = cv2.resize(image, (width, height), interpolation=_CV2_FLAGS[method])
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]  # cv2 squeezes (H, W, 1) to (H, W)
    if out.dtype == np.float32:
        np.clip(out, 0.0, 1.0, out=out)
    return out
