"""Face detection: one interface, two detectors.

:class:`FaceDetector` is what the faces stage needs: an RGB image in, a list of
:class:`Face` (box, score, five landmarks) out. Two implementations:

- ``cascade`` → :class:`CascadeFaceDetector`: the classical boosted-cascade
  detector (Viola & Jones) that runs offline with files every install already
  has. Why this one and not the others that were considered:

  * OpenCV 5.x wheels ship no cascade files (``cv2.data.haarcascades`` is an
    empty folder) and no ``cv2.CascadeClassifier`` at all; Debian's
    ``opencv-data`` is not installed on workers;
  * OpenCV's YuNet and mediapipe's face detector need model files that are
    not shipped (mediapipe's current wheel has none);
  * scikit-image ships OpenCV's LBP frontal-face cascade
    (``skimage.data.lbp_frontal_face_cascade_filename()``) and the evaluator
    ``skimage.feature.Cascade``: a real, trained detector, no download.

  The spec calls this detector ``cascade``; its features are
  multi-block LBP, which OpenCV trained for the same job. It returns boxes
  only: eyes are placed by a dark-blob search inside the box and the nose
  and mouth corners come from face geometry, so its landmarks are COARSER
  than RetinaFace's (a few percent of the face width). The aligned crop is
  then slightly off the template, which the restorers tolerate, but
  production jobs should use ``retinaface``.
- ``retinaface`` → facexlib's ResNet-50 RetinaFace, the official GFPGAN
  pipeline's detector; its weights resolve through the registry
  (``retinaface_resnet50``) like every other weight, never downloaded silently.

Images follow :mod:`raysr.imageops`: ``(H, W, 3)`` RGB, ``uint8`` in [0, 255].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from raysr.imageops._checks import check_image

# The cascade's own window is 24 px: faces smaller than that are found by
# upsampling the image first (multi-scale detection of small faces).
_CASCADE_WINDOW = 24
# Images are upsampled until their short side reaches this (at most 4x), so a
# degraded 25 px face still gives the cascade enough pixels.
_MIN_DETECT_SIDE = 384
_MAX_UPSAMPLE = 4
# Long side of the image the cascade scans; larger inputs are scanned downsized.
_MAX_DETECT_SIDE = 1024
# Window growth per scale and the raw hits a face needs (OpenCV's minNeighbors):
# measured on skimage's astronaut at 1x, 1/2x, 1/4x and a blurred, noisy, JPEG
# 1/2x copy, the face collects 8-17 raw windows, false hits on her suit <= 7.
_SCALE_FACTOR = 1.15
_MIN_HITS = 8
_GROUP_IOU = 0.4

#: The five landmarks, in this order, for every detector.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

# Landmarks as fractions of the cascade box (x, y), measured on the FFHQ
# template against cascade boxes of frontal faces; image left = subject's right,
# "left_eye" is the eye on the image's left, as in RetinaFace's output.
_BOX_LANDMARKS = np.array(
    [[0.31, 0.38], [0.69, 0.38], [0.50, 0.60], [0.35, 0.78], [0.65, 0.78]], dtype=np.float32
)


class DetectorError(RuntimeError):
    """A detector cannot be built (unknown name, missing dependency or weights)."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float px, x right, y down.
        score: detector confidence in [0, 1].
        landmarks: ``(5, 2)`` float32 ``(x, y)`` px in :data:`LANDMARK_NAMES` order.
        landmarks_estimated: True when landmarks come from box geometry (cascade),
            False when the detector regressed them (RetinaFace).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    landmarks_estimated: bool = False

    @property
    def size(self) -> float:
        """Face size in px: the geometric mean of the box sides."""
        x1, y1, x2, y2 = self.box
        return float(np.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0)))

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times larger."""
        return Face(tuple(float(v) * factor for v in self.box), self.score,
                    (self.landmarks * factor).astype(np.float32), self.landmarks_estimated)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces: ``detect(image) -> list[Face]``, best first."""

    name: str

    def detect(self, image: np.ndarray, min_face_px: int = _CASCADE_WINDOW) -> list[Face]:
        """Faces in ``image`` ((H, W, 3) uint8 RGB) at least ``min_face_px`` px wide, best first."""
        ...


def _gray_u8(image: np.ndarray) -> np.ndarray:
    check_image(image, "image", (np.uint8,))
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)


def _group_windows(windows: list[dict]) -> list[tuple[int, np.ndarray]]:
    """Cluster raw cascade windows by IoU; ``(hits, median box xyxy)`` per cluster, most hits first."""
    if not windows:
        return []
    boxes = np.array([[w["c"], w["r"], w["c"] + w["width"], w["r"] + w["height"]] for w in windows], np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    used = np.zeros(len(boxes), bool)
    groups = []
    for index in np.argsort(-areas):
        if used[index]:
            continue
        box = boxes[index]
        inter_w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
        inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
        inter = inter_w * inter_h
        members = (inter / (areas + areas[index] - inter) > _GROUP_IOU) & ~used
        used |= members
        groups.append((int(members.sum()), np.median(boxes[members], axis=0)))
    return sorted(groups, key=lambda group: -group[0])


def _place_landmarks(gray: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Five landmarks for a cascade box: eyes by a dark-blob search, the rest from geometry.

    Each eye is the darkest point of a blurred copy inside a window around its
    geometric prior; the search result is kept only when the two eyes come out
    level and plausibly spaced, else the prior stands.
    """
    x1, y1, x2, y2 = box
    width = x2 - x1
    points = _BOX_LANDMARKS * [x2 - x1, y2 - y1] + [x1, y1]
    sigma = max(width / 30.0, 0.8)
    blurred = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    found = []
    for prior in points[:2]:
        half = 0.12 * width
        cx0, cy0 = int(max(prior[0] - half, 0)), int(max(prior[1] - half, 0))
        cx1, cy1 = int(min(prior[0] + half, gray.shape[1])), int(min(prior[1] + half, gray.shape[0]))
        window = blurred[cy0:cy1, cx0:cx1]
        if window.size < 4:
            return points.astype(np.float32)
        row, col = np.unravel_index(int(np.argmin(window)), window.shape)
        found.append((cx0 + col, cy0 + row))
    (lx, ly), (rx, ry) = found
    if abs(ly - ry) < 0.1 * width and 0.28 * width < rx - lx < 0.5 * width:
        points[0], points[1] = found
    return points.astype(np.float32)


class CascadeFaceDetector:
    """Offline boosted-cascade face detector (OpenCV's LBP frontal-face cascade via scikit-image).

    Multi-scale: small images are upsampled (short side to 384 px, up to 4x)
    before the cascade scans every window size from 24 px up, so faces down to
    ~8 input px can be found; large images are scanned downsized to 1024 px.
    Score: raw window hits h of a cluster as ``h / (h + 4)``; a face needs 8 hits.
    Landmarks are estimated (see the module docstring): coarser than RetinaFace's.

    Example:
        >>> from skimage import data
        >>> faces = CascadeFaceDetector().detect(data.astronaut())
        >>> len(faces) >= 1 and 160 < faces[0].box[0] < 200
        True
    """

    name = "cascade"

    def __init__(self, cascade_file: str | Path | None = None) -> None:
        try:
            from skimage import data
            from skimage.feature import Cascade
        except ImportError:
            raise DetectorError(
                "the 'cascade' face detector needs scikit-image (its LBP face cascade): "
                "pip install 'raysr[faces]' (or scikit-image>=0.24), or set faces.detector: retinaface"
            ) from None
        path = Path(cascade_file) if cascade_file else Path(data.lbp_frontal_face_cascade_filename())
        if not path.is_file():
            raise DetectorError(f"face cascade file {path} does not exist; reinstall scikit-image")
        self._cascade = Cascade(str(path))

    def detect(self, image: np.ndarray, min_face_px: int = _CASCADE_WINDOW) -> list[Face]:
        """Faces in ``image``, most hits first.

        Args:
            image: ``(H, W)`` or ``(H, W, C)`` uint8, RGB(A) or gray.
            min_face_px: smallest face side to look for, input px (>= 8).

        Returns:
            :class:`Face` list in input px, landmarks estimated.
        """
        gray = _gray_u8(image)
        height, width = gray.shape
        # 1. Pick the scan scale: upsample small images, downsize huge ones.
        factor = min(max(_MIN_DETECT_SIDE / min(height, width), _CASCADE_WINDOW / max(min_face_px, 8), 1.0),
                     _MAX_UPSAMPLE)
        if factor == 1.0 and max(height, width) > _MAX_DETECT_SIDE:
            factor = _MAX_DETECT_SIDE / max(height, width)
        scan = gray if factor == 1.0 else cv2.resize(
            gray, (max(round(width * factor), 1), max(round(height * factor), 1)),
            interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
        if min(scan.shape) < _CASCADE_WINDOW:
            return []
        # 2. Raw windows at every scale, grouped by overlap; hits are the evidence.
        windows = self._cascade.detect_multi_scale(
            img=scan.astype(np.float32), scale_factor=_SCALE_FACTOR, step_ratio=1.0,
            min_size=(_CASCADE_WINDOW, _CASCADE_WINDOW), max_size=scan.shape,
            min_neighbor_number=1, intersection_score_threshold=1.01)
        faces = []
        for hits, box in _group_windows(windows):
            box = box / factor
            if hits < _MIN_HITS or min(box[2] - box[0], box[3] - box[1]) < min_face_px:
                continue
            faces.append(Face(tuple(float(v) for v in box), hits / (hits + 4.0),
                              _place_landmarks(gray, box), landmarks_estimated=True))
        return faces


@functools.lru_cache(maxsize=4)
def make_detector(name: str, weights_dir: str | None = None) -> FaceDetector:
    """The detector ``faces.detector`` names, built once per process.

    Args:
        name: ``cascade`` (offline LBP cascade) or ``retinaface`` (registry weights
            ``retinaface_resnet50``).
        weights_dir: weights cache for ``retinaface``.

    Raises:
        DetectorError: unknown name, or the detector cannot be built; the
            message says what to install or set.
    """
    if name == "cascade":
        return CascadeFaceDetector()
    if name == "retinaface":
        from raysr.faces.retinaface import RetinaFaceDetector

        return RetinaFaceDetector.from_registry(weights_dir)
    raise DetectorError(f"faces.detector must be 'cascade' or 'retinaface', got {name!r}")
