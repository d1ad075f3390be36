import cv2
import numpy as np
import pytest
from skimage import data

from raysr.faces.detect import LANDMARK_NAMES, CascadeFaceDetector, DetectorError, Face, FaceDetector, make_detector

# Hand-measured on skimage's astronaut: her face (brows to chin, ear to ear).
KNOWN_FACE = (175, 65, 270, 165)


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_protocol_and_factory():
    detector = make_detector("cascade")
    assert isinstance(detector, FaceDetector) and detector is make_detector("cascade")
    with pytest.raises(DetectorError, match="cascade"):
        make_detector("mtcnn")


def test_finds_astronaut_face(astronaut_face):
    assert iou(astronaut_face.box, KNOWN_FACE) > 0.6
    assert 0.5 < astronaut_face.score <= 1.0
    assert astronaut_face.landmarks.shape == (len(LANDMARK_NAMES), 2) and astronaut_face.landmarks_estimated
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = astronaut_face.landmarks
    assert lx < nx < rx and ly < ny < mly and abs(ly - ry) < 10 and mlx < mrx


@pytest.mark.parametrize("scale, degrade", [(0.25, False), (0.5, True)])
def test_small_and_degraded_copies(detector, astronaut, scale, degrade):
    """Multi-scale: a 128 px copy (face ~25 px) and a blurred, noisy, JPEG'd 256 px copy."""
    size = int(512 * scale)
    small = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA)
    if degrade:
        small = cv2.GaussianBlur(small, (0, 0), 1.0)
        noise = np.random.default_rng(0).normal(0, 5, small.shape)
        small = np.clip(small + noise, 0, 255).astype(np.uint8)
        small = cv2.imdecode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_UNCHANGED)
    faces = detector.detect(small, min_face_px=8)
    assert faces and iou(np.array(faces[0].box) / scale, KNOWN_FACE) > 0.5


@pytest.mark.parametrize("image", [np.full((200, 300, 3), 128, np.uint8), data.coffee()], ids=["flat", "coffee"])
def test_no_face(detector, image):
    assert detector.detect(image) == []


def test_gray_and_min_size(detector, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert detector.detect(gray)
    assert detector.detect(astronaut, min_face_px=200) == []


def test_face_scaled():
    face = Face((1, 2, 3, 4), 0.9, np.ones((5, 2), np.float32))
    assert face.scaled(2).box == (2, 4, 6, 8) and face.scaled(2).landmarks[0, 0] == 2


def test_rejects_float_image(detector):
    with pytest.raises(ValueError, match="dtype"):
        detector.detect(np.zeros((64, 64, 3), np.float32))


def test_missing_cascade_file(tmp_path):
    with pytest.raises(DetectorError, match="does not exist"):
        CascadeFaceDetector(tmp_path / "none.xml")
