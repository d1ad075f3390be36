"""FaceTracker: jitter smoothed, motion followed, faces kept apart, tracks dropped and restarted."""

import numpy as np
import pytest

from raysr.faces.detect import Face
from raysr.faces.track import FOLLOW_AT, MAX_MISSED, FaceTracker

_LANDMARKS = np.array([[31, 38], [69, 38], [50, 60], [35, 78], [65, 78]], np.float32)


def face_at(x: float, y: float, size: float = 100.0, jitter: np.ndarray | None = None) -> Face:
    landmarks = _LANDMARKS * (size / 100.0) + np.array([x, y], np.float32)
    if jitter is not None:
        landmarks = landmarks + jitter.astype(np.float32)
    return Face((x, y, x + size, y + size), 0.9, landmarks)


def test_jitter_of_a_still_face_is_smoothed():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(smoothing=0.7)
    raw, steady = [], []
    for _ in range(60):
        face = face_at(200, 100, jitter=rng.normal(0, 1.5, (5, 2)))
        raw.append(face.landmarks)
        steady.append(tracker.update([face])[0].landmarks)
    raw_spread = np.std(np.stack(raw[10:]), axis=0).mean()
    steady_spread = np.std(np.stack(steady[10:]), axis=0).mean()
    assert steady_spread < 0.6 * raw_spread
    assert tracker.tracks_started == 1


def test_fast_motion_is_followed_without_lag():
    tracker = FaceTracker(smoothing=0.9)
    step = 100 * FOLLOW_AT * 1.5  # a move above FOLLOW_AT of the face size per frame
    for frame in range(10):
        face = face_at(100 + frame * step, 100)
        out = tracker.update([face])[0]
        np.testing.assert_allclose(out.landmarks, face.landmarks, atol=1e-4)


def test_two_faces_keep_their_own_tracks_and_order():
    tracker = FaceTracker(smoothing=0.7)
    for frame in range(5):
        left, right = face_at(50 + frame * 0.5, 100), face_at(400, 100 + frame * 0.5)
        out = tracker.update([right, left])
        assert out[0].box[0] > 300 and out[1].box[0] < 100  # same order as given
    assert tracker.tracks_started == 2


def test_a_face_gone_longer_than_max_missed_starts_a_new_track():
    tracker = FaceTracker(smoothing=0.7)
    tracker.update([face_at(100, 100)])
    for _ in range(MAX_MISSED):
        tracker.update([])
    tracker.update([face_at(101, 100)])
    assert tracker.tracks_started == 1  # a short gap keeps the track
    for _ in range(MAX_MISSED + 1):
        tracker.update([])
    first = face_at(140, 100)
    assert tracker.update([first])[0] is first  # a new track starts from the detection itself
    assert tracker.tracks_started == 2


def test_zero_smoothing_returns_detections_unchanged():
    tracker = FaceTracker(smoothing=0.0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        face = face_at(10, 10, jitter=rng.normal(0, 2, (5, 2)))
        np.testing.assert_allclose(tracker.update([face])[0].landmarks, face.landmarks, atol=1e-5)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_smoothing_out_of_range_is_refused(smoothing):
    with pytest.raises(ValueError, match="smoothing must be in"):
        FaceTracker(smoothing)
