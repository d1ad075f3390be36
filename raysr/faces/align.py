"""Align faces to the 512 px FFHQ template and paste restored faces back without a seam.

The template (five points in a 512×512 crop) is the one facexlib's
``FaceRestoreHelper`` uses for GFPGAN, RestoreFormer and CodeFormer
(https://github.com/xinntao/facexlib/blob/v0.3.0/facexlib/utils/face_restoration_helper.py,
MIT); the numbers are data, the code here is raysr's own.

Paste-back, step by step (:func:`paste_face`):

1. the soft mask lives in template space: a square inset from the crop
   border and feathered with a Gaussian, both in fractions of the 512 crop, so
   after warping their width scales with the face (a 40 px face gets a 1-2 px
   feather, a 400 px face a 20 px one);
2. mask and face are warped by the inverse affine only into the face's
   bounding rectangle, clipped to the image: faces cut by an image border
   paste what lies inside it, and cost scales with the face, not the image;
3. ``out = bg + mask · (face − bg)``: where the mask is 0 the background's
   pixels are returned unchanged, bit for bit.

All functions take float32 RGB in [0, 1], ``(H, W, 3)``.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_SIZE = 512

#: facexlib's 5-point template for 512×512 crops (x, y px): eyes, nose, mouth corners.
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)

# Soft mask in template px: inset from the crop border, then Gaussian feather.
_MASK_INSET = 24.0
_MASK_FEATHER_SIGMA = 12.0


def _check_rgb_float(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        raise ValueError(
            f"{name} must be float32 (H, W, 3) RGB in [0, 1], got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


def estimate_alignment(landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Similarity transform (2×3) taking image landmarks onto the template.

    Args:
        landmarks: ``(5, 2)`` float (x, y) px in the order of
            :data:`raysr.faces.detect.LANDMARK_NAMES`.
        size: crop side; the 512 template is scaled to it.

    Returns:
        ``(2, 3)`` float64 affine (rotation, uniform scale, translation),
        fitted with LMEDS like facexlib.

    Raises:
        ValueError: wrong landmark shape, or a degenerate fit.
    """
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {points.shape}")
    template = FFHQ_TEMPLATE_512 * (size / FACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)
    if matrix is None or not np.all(np.isfinite(matrix)):
        raise ValueError(f"cannot fit a similarity transform to landmarks {points.round(1).tolist()}")
    return matrix


def invert_alignment(matrix: np.ndarray) -> np.ndarray:
    """The inverse (template → image) of a 2×3 affine."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The aligned ``size × size`` crop of ``image``; outside the image is mirrored.

    Mirroring (not facexlib's flat gray) gives the restorer plausible context
    for faces cut by an image border; those pixels are never pasted back.
    """
    _check_rgb_float(image, "image")
    # Shrinking by more than 2x aliases with bilinear sampling: low-pass first.
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    source = cv2.GaussianBlur(image, (0, 0), 0.5 / scale) if scale < 0.5 else image
    return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def face_mask(size: int = FACE_SIZE) -> np.ndarray:
    """``(size, size)`` float32 soft mask in template space: 1 inside, feathered to 0 at the inset border."""
    scale = size / FACE_SIZE
    inset = int(round(_MASK_INSET * scale))
    mask = np.zeros((size, size), np.float32)
    mask[inset:size - inset, inset:size - inset] = 1.0
    sigma = _MASK_FEATHER_SIGMA * scale
    # Erode by two sigmas first so the feather stays inside the crop and reaches 0 before its edge.
    erode = int(round(2 * sigma))
    mask = cv2.erode(mask, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    # Cut the Gaussian's far tail so the mask is exactly 0 at the crop border.
    return np.clip((mask - 1e-3) / (1.0 - 1e-3), 0.0, 1.0)


def match_color(face: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give ``face`` the per-channel Lab mean and std of ``reference`` inside ``mask``.

    Args:
        face, reference: ``(S, S, 3)`` float32 RGB in [0, 1], same shape.
        mask: ``(S, S)`` float32 weights in [0, 1]; statistics are mask-weighted.

    Returns:
        ``face`` recoloured, float32 RGB clipped to [0, 1].
    """
    weights = mask[..., None] / max(float(mask.sum()), 1e-6)
    lab_face = cv2.cvtColor(face, cv2.COLOR_RGB2LAB)
    lab_ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB)
    mean_f = (lab_face * weights).sum(axis=(0, 1))
    mean_r = (lab_ref * weights).sum(axis=(0, 1))
    std_f = np.sqrt(((lab_face - mean_f) ** 2 * weights).sum(axis=(0, 1)))
    std_r = np.sqrt(((lab_ref - mean_r) ** 2 * weights).sum(axis=(0, 1)))
    gain = np.where(std_f > 1e-3, std_r / np.maximum(std_f, 1e-3), 1.0)
    matched = ((lab_face - mean_f) * gain + mean_r).astype(np.float32)
    return np.clip(cv2.cvtColor(matched, cv2.COLOR_LAB2RGB), 0.0, 1.0)


def paste_face(background: np.ndarray, face: np.ndarray, matrix: np.ndarray,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Paste an aligned face back into ``background`` with a soft mask.

    Args:
        background: ``(H, W, 3)`` float32 RGB in [0, 1], the image the face goes into.
        face: ``(S, S, 3)`` float32 RGB in [0, 1], aligned by ``matrix``.
        matrix: the ``(2, 3)`` affine that took ``background`` px to the crop
            (landmarks already in ``background`` px).
        mask: ``(S, S)`` float32 template mask; default :func:`face_mask`.

    Returns:
        A new ``(H, W, 3)`` float32 image; pixels where the warped mask is 0
        (including everything outside the face's rectangle) equal ``background``.

    Example:
        >>> bg = np.zeros((64, 64, 3), np.float32)
        >>> m = estimate_alignment(FFHQ_TEMPLATE_512 / 8)
        >>> paste_face(bg, np.ones((512, 512, 3), np.float32), m)[32, 32].round(2).tolist()
        [1.0, 1.0, 1.0]
    """
    _check_rgb_float(background, "background")
    _check_rgb_float(face, "face")
    size = face.shape[0]
    mask = face_mask(size) if mask is None else mask
    inverse = invert_alignment(matrix)
    # 1. The face's rectangle in the background, clipped to the image.
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    height, width = background.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    out = background.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # 2. Warp face and mask into that rectangle only.
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warped_face = cv2.warpAffine(face, local, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_mask = cv2.warpAffine(mask, local, dsize, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    # 3. Blend; a zero mask leaves the background's values exactly.
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = np.where(warped_mask > 0, region + warped_mask * (warped_face - region), region)
    return out
