"""Faces in video: restore every frame's faces with tracked, smoothed landmarks.

A video's frames never leave the actor that decodes and encodes its segment, so for a
video routed to ``faces`` the upscale actor runs the face restorer too (images keep the
restorer in a pool of its own). Per segment, :class:`VideoFaces` detects faces on each
input frame, steadies them with a :class:`~raysr.faces.track.FaceTracker` (landmark
jitter would otherwise move the aligned crop and make the face shimmer) and restores them
into the background model's frame with :func:`~raysr.faces.restore.restore_faces`. Its
:meth:`summary` is what the manifest's ``faces`` column holds for a segment.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from raysr.faces.detect import FaceDetector
from raysr.faces.identity import FaceEmbedder
from raysr.faces.restore import Restorer, detect_faces, restore_faces
from raysr.faces.track import FaceTracker

if TYPE_CHECKING:
    from raysr.job.spec import FacesSpec

#: Landmark smoothing of video faces (see FaceTracker): still faces average ~3 frames.
VIDEO_SMOOTHING = 0.7


class VideoFaces:
    """Face restoration for the frames of one video segment, in order.

    Args:
        restorer, detector, embedder, options: as for :func:`restore_faces`.
        smoothing: the tracker's landmark smoothing, 0 (none) to < 1.

    Example:
        >>> faces = VideoFaces(restorer, detector, embedder, spec.faces)  # doctest: +SKIP
        >>> out = [faces.restore(frame, upscale(frame)) for frame in frames]  # doctest: +SKIP
    """

    def __init__(self, restorer: Restorer, detector: FaceDetector, embedder: FaceEmbedder, options: FacesSpec,
                 smoothing: float = VIDEO_SMOOTHING) -> None:
        self.restorer, self.detector, self.embedder, self.options = restorer, detector, embedder, options
        self.tracker = FaceTracker(smoothing)
        self.frames = 0
        self.frames_with_faces = 0
        self.actions: Counter[str] = Counter()

    def restore(self, input_frame: np.ndarray, background: np.ndarray, count: bool = True) -> np.ndarray:
        """One frame: ``(h, w, 3)`` RGB input and its ``(s·h, s·w, 3)`` background-model output,
        uint8 or uint16 as decoded (:mod:`raysr.video.frames`) → the background with the faces
        restored, same shape and dtype. ``count=False`` for a priming frame (the one before a
        segment, see :func:`raysr.video.segment.encode_segment`): tracked, restored, not counted."""
        detected = detect_faces(input_frame, self.detector, self.options)
        self.frames += count
        if not detected:
            self.tracker.update([])
            return background
        self.frames_with_faces += count
        steady = self.tracker.update(detected)
        restored, records = restore_faces(input_frame, background, self.restorer, self.detector, self.embedder,
                                          self.options, faces=steady)
        if count:
            self.actions.update(record.action for record in records)
        return restored

    @property
    def restored_count(self) -> int:
        """Face instances restored or blended, over all frames so far."""
        return self.actions["restored"] + self.actions["blended"]

    def summary(self) -> dict:
        """Counts for the manifest: frames, frames with faces, tracks started, faces per action."""
        return {"frames": self.frames, "frames_with_faces": self.frames_with_faces,
                "tracks": self.tracker.tracks_started, **{action: self.actions[action] for action in sorted(self.actions)}}
