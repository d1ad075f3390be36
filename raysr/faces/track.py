"""Steady faces in video: follow each face across frames and smooth its landmarks.

The restorer aligns every face from its 5 landmarks. Per-frame detections jitter by a
pixel or two (the offline cascade, whose landmarks come from box geometry, by more), and
each jitter moves the aligned crop, so a restored face shimmers from frame to frame.
:class:`FaceTracker` matches each frame's faces to the previous frame's tracks by box
overlap (IoU, best pairs first) and smooths each track's box and landmarks with a moving
average whose weight follows the motion: moves small against the face (jitter) are
smoothed, moves of :data:`FOLLOW_AT` of the face size or more (a turning head, a cut) are
taken at once, so a face never lags behind the head it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from raysr.faces.detect import Face

#: A landmark move of this fraction of the face size is followed without smoothing.
FOLLOW_AT = 0.15
#: Boxes overlapping at least this much (IoU) are the same face in consecutive frames.
MATCH_IOU = 0.3
#: A track survives this many frames without a detection (a blink of the detector).
MAX_MISSED = 2


@dataclass
class _Track:
    box: np.ndarray  # (4,) float64
    landmarks: np.ndarray  # (5, 2) float64
    missed: int = 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTracker:
    """Tracks faces through consecutive frames of one video segment.

    Args:
        smoothing: 0 returns detections unchanged; towards 1, jitter is averaged over
            more frames (the weight of a new detection is ``1 - smoothing`` for a still face).

    Example:
        >>> tracker = FaceTracker(smoothing=0.7)
        >>> steady = [tracker.update(faces) for faces in detections_per_frame]  # doctest: +SKIP
    """

    def __init__(self, smoothing: float = 0.7) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.tracks_started = 0
        self._tracks: list[_Track] = []

    def update(self, faces: list[Face]) -> list[Face]:
        """This frame's detections → the same faces, in the same order, with smoothed box and landmarks."""
        pairs = sorted(
            ((_iou(np.asarray(face.box, np.float64), track.box), face_index, track_index)
             for face_index, face in enumerate(faces) for track_index, track in enumerate(self._tracks)),
            reverse=True)
        track_of: dict[int, int] = {}
        taken: set[int] = set()
        for overlap, face_index, track_index in pairs:
            if overlap < MATCH_IOU:
                break
            if face_index not in track_of and track_index not in taken:
                track_of[face_index] = track_index
                taken.add(track_index)
        steady = []
        for face_index, face in enumerate(faces):
            box = np.asarray(face.box, np.float64)
            landmarks = np.asarray(face.landmarks, np.float64)
            track_index = track_of.get(face_index)
            if track_index is None:
                self._tracks.append(_Track(box, landmarks))
                self.tracks_started += 1
                taken.add(len(self._tracks) - 1)
                steady.append(face)
                continue
            track = self._tracks[track_index]
            weight = self._new_weight(track.landmarks, landmarks, face.size)
            track.box = track.box + weight * (box - track.box)
            track.landmarks = track.landmarks + weight * (landmarks - track.landmarks)
            track.missed = 0
            steady.append(replace(face, box=tuple(float(v) for v in track.box),
                                  landmarks=track.landmarks.astype(np.float32)))
        for index, track in enumerate(self._tracks):
            if index not in taken:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= MAX_MISSED]
        return steady

    def _new_weight(self, previous: np.ndarray, observed: np.ndarray, face_size: float) -> float:
        """Weight of the new detection: ``1 - smoothing`` when still, rising to 1 at :data:`FOLLOW_AT`."""
        move = float(np.linalg.norm(observed - previous, axis=1).mean()) / max(face_size, 1.0)
        stillness = max(0.0, 1.0 - move / FOLLOW_AT)
        return 1.0 - self.smoothing * stillness
