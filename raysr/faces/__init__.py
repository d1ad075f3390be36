"""Face restoration: detect, align to the 512 template, restore, guard identity, paste back.

See :func:`restore_faces` for the pipeline and :class:`raysr.stages.faces.FaceStage`
for how a job runs it. Video face-landmark smoothing is not implemented.
"""

from raysr.faces.align import FFHQ_TEMPLATE_512, estimate_alignment, paste_face, warp_face
from raysr.faces.detect import CascadeFaceDetector, DetectorError, Face, FaceDetector, make_detector
from raysr.faces.identity import FaceEmbedder, HogFaceEmbedder, identity_score, make_embedder
from raysr.faces.probe import has_faces
from raysr.faces.restore import FaceRecord, FaceRestorer, Restorer, records_json, restore_faces

__all__ = [
    "FFHQ_TEMPLATE_512", "CascadeFaceDetector", "DetectorError", "Face", "FaceDetector", "FaceEmbedder",
    "FaceRecord", "FaceRestorer", "HogFaceEmbedder", "Restorer", "estimate_alignment", "has_faces",
    "identity_score", "make_detector", "make_embedder", "paste_face", "records_json", "restore_faces",
    "warp_face",
]
