"""The router's cheap question: does this photo show a face worth restoring?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from raysr.faces.detect import make_detector
from raysr.imageops._checks import check_image, from_float01, split_alpha, to_float01
from raysr.imageops.resize import resize

if TYPE_CHECKING:
    from raysr.job.spec import FacesSpec

#: The probe detects on a copy whose long side is at most this many px.
PROBE_SIDE = 512


def has_faces(image_rgb: np.ndarray, faces: FacesSpec, weights_dir: str | None = None) -> tuple[bool, str]:
    """Whether ``image_rgb`` holds a face of at least ``faces.min_face_px`` input px.

    Detection runs on a copy downsized to <= 512 px (area), so the probe costs
    well under a second on CPU; ``min_face_px`` is scaled with it.

    Args:
        image_rgb: ``(H, W)`` or ``(H, W, C)``, C in {1, 3, 4}; uint8, uint16 or float32 [0, 1].
        faces: the job's face settings (detector, min_face_px).
        weights_dir: weights cache for the ``retinaface`` detector.

    Returns:
        ``(found, reason)``: ``reason`` is a short line for the manifest's ``route_reason``.
    """
    check_image(image_rgb, "image_rgb")
    color, _ = split_alpha(image_rgb)
    pixels = color if color.dtype == np.uint8 else from_float01(to_float01(color), np.uint8)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    factor = min(1.0, PROBE_SIDE / max(pixels.shape[:2]))
    if factor < 1.0:
        size = (max(round(pixels.shape[0] * factor), 1), max(round(pixels.shape[1] * factor), 1))
        pixels = resize(pixels, size, "area")
    min_px = max(8, int(faces.min_face_px * factor))
    found = make_detector(faces.detector, weights_dir).detect(pixels, min_face_px=min_px)
    if not found:
        return False, f"no face >= {faces.min_face_px} px found ({faces.detector} detector)"
    largest = max(face.size for face in found) / factor
    return True, f"{len(found)} face(s) found ({faces.detector} detector), largest {largest:.0f} px"
