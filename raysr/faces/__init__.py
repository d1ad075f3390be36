"""Face restoration: detect, align to the 512 template, restore, guard identity, paste back.

See :func:`restore_faces` for the pipeline and :class:`raysr.stages.faces.FaceStage`
for how a job runs it; :class:`VideoFaces` restores the frames of a video segment with
tracked, smoothed landmarks (:class:`FaceTracker`).
"""

from raysr.faces.align import FFHQ_TEMPLATE_512, estimate_alignment, paste_face, warp_face
from raysr.faces.detect import CascadeFaceDetector, DetectorError, Face, FaceDetector, make_detector
from raysr.faces.identity import FaceEmbedder, HogFaceEmbedder, embedder_for, identity_score, make_embedder
from raysr.faces.probe import has_faces
from raysr.faces.restore import FaceRecord, FaceRestorer, Restorer, records_json, restore_faces
from raysr.faces.track import FaceTracker
from raysr.faces.video import VideoFaces

__all__ = [
    "FFHQ_TEMPLATE_512", "CascadeFaceDetector", "DetectorError", "Face", "FaceDetector", "FaceEmbedder",
    "FaceRecord", "FaceRestorer", "FaceTracker", "HogFaceEmbedder", "Restorer", "VideoFaces", "embedder_for",
    "estimate_alignment", "has_faces", "identity_score", "make_detector", "make_embedder", "paste_face",
    "records_json", "restore_faces", "warp_face",
]
