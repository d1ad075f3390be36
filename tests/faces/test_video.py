"""VideoFaces: frame by frame restoration with tracked landmarks, on a real face."""

import json

import cv2
import numpy as np
import pytest

from raysr.faces.video import VideoFaces
from raysr.job.spec import FacesSpec


class PatternRestorer:
    """Returns a fixed pattern in template space: the pasted result shows every move of the alignment."""

    name, applies_fidelity = "pattern", False

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.pattern = cv2.GaussianBlur(rng.random((512, 512, 3), dtype=np.float32), (0, 0), 12)

    def restore(self, face, fidelity):
        return self.pattern.copy()


class JitteryDetector:
    """The real offline detector, plus the landmark jitter a video's frames show."""

    def __init__(self, detector, jitter_px: float, seed: int = 0) -> None:
        self.detector, self.jitter_px = detector, jitter_px
        self.rng = np.random.default_rng(seed)

    def detect(self, image, min_face_px=24):
        from dataclasses import replace

        return [replace(face, landmarks=face.landmarks + self.rng.normal(0, self.jitter_px, (5, 2)).astype(np.float32))
                for face in self.detector.detect(image, min_face_px=min_face_px)]


def upscale2(frame):
    return cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


def run(frames, detector, embedder, smoothing):
    faces = VideoFaces(PatternRestorer(), detector, embedder,
                       FacesSpec(fidelity=0.0, identity_threshold=None), smoothing=smoothing)
    return [faces.restore(frame, upscale2(frame)) for frame in frames], faces


def flicker(outputs):
    """Mean frame-to-frame change over the face region (2x output px)."""
    region = [frame[120:340, 340:550].astype(np.float32) for frame in outputs]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(region, region[1:])]))


@pytest.fixture(scope="module")
def still_frames(astronaut):
    return [astronaut.copy() for _ in range(12)]


def test_restores_every_frame_and_counts(still_frames, detector, embedder):
    outputs, faces = run(still_frames, detector, embedder, smoothing=0.7)
    assert all(out.shape == (1024, 1024, 3) and out.dtype == np.uint8 for out in outputs)
    assert not np.array_equal(outputs[0], upscale2(still_frames[0]))  # the face was pasted
    summary = faces.summary()
    assert summary["frames"] == summary["frames_with_faces"] == 12 and summary["tracks"] == 1
    assert faces.restored_count == summary["restored"] == 12
    json.dumps(summary)


def test_smoothing_steadies_a_jittery_face(still_frames, detector, embedder):
    raw, _ = run(still_frames, JitteryDetector(detector, 2.0), embedder, smoothing=0.0)
    steady, _ = run(still_frames, JitteryDetector(detector, 2.0), embedder, smoothing=0.7)
    assert flicker(steady) < 0.6 * flicker(raw)  # measured: 0.39x over 20 frames


def test_frames_without_faces_pass_through(detector, embedder):
    blank = np.full((96, 128, 3), 40, np.uint8)
    outputs, faces = run([blank, blank], detector, embedder, smoothing=0.7)
    np.testing.assert_array_equal(outputs[0], upscale2(blank))
    assert faces.summary() == {"frames": 2, "frames_with_faces": 0, "tracks": 0}


def test_16_bit_frames_stay_16_bit(astronaut, detector, embedder):
    frame = astronaut.astype(np.uint16) * 257
    outputs, faces = run([frame], detector, embedder, smoothing=0.7)
    assert outputs[0].dtype == np.uint16 and faces.restored_count == 1


def test_a_priming_frame_is_tracked_but_not_counted(still_frames, detector, embedder):
    faces = VideoFaces(PatternRestorer(), detector, embedder, FacesSpec(fidelity=0.0, identity_threshold=None))
    faces.restore(still_frames[0], upscale2(still_frames[0]), count=False)
    assert faces.summary() == {"frames": 0, "frames_with_faces": 0, "tracks": 1}
    faces.restore(still_frames[1], upscale2(still_frames[1]))
    assert faces.summary()["frames"] == 1 and faces.summary()["tracks"] == 1  # the primed track continues
