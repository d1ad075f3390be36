"""The faces stage: restore the faces of items routed to ``faces`` over their background output.

It runs in an actor pool of its own, after the route's background model
(``UpscaleStage``) and before colour correction. Layouts it takes:

- gray ``(H, W)``/``(H, W, 1)``: through the face path as 3 equal channels,
  back to one channel (luma); pixels no face touched keep their exact value;
- RGBA: faces restored on RGB, the background model's alpha kept as is;
- 16-bit: restored in float32 from the 16-bit pixels and written back as
  16-bit (the restorer's detail is 8-bit-trained, the blend keeps 16 bits);
- video items pass through: their frames had their faces restored in the upscale
  actor, with tracked, smoothed landmarks (:mod:`raysr.faces.video`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

import cv2
import numpy as np

from raysr.faces import FaceRestorer, embedder_for, make_detector, records_json, restore_faces
from raysr.imageops._checks import merge_alpha, split_alpha
from raysr.job.spec import FacesSpec
from raysr.stages._batch import Batch, Row, decode_input, fail, map_rows, pack_pixels, pending, timed, unpack_pixels


def _as_rgb(color: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) colour channels → (H, W, 3)."""
    return np.repeat(color, 3, axis=2) if color.shape[2] == 1 else np.ascontiguousarray(color)


class FaceStage:
    """Detect, restore and paste back faces. Construct once per actor.

    Args:
        face_model: restorer, registry name or weights path (``GFPGANv1.4`` …).
        faces: the job's face settings.
        weights_dir: weights cache for the restorer and the ``retinaface`` detector.
        precision: ``auto``/``fp32``/``bf16``/``fp16`` for the restorer.

    Reads the background model's ``pixels`` and the item's ``data`` (the input);
    writes ``pixels`` and the manifest's face columns.
    """

    reads = ("data", "input_uri", "relative", "pixels", "pixels_shape", "pixels_dtype")
    writes = ("pixels", "pixels_shape", "pixels_dtype", "face_model", "face_count", "faces", "faces_s")

    def __init__(self, face_model: str, faces: FacesSpec, weights_dir: str | None = None,
                 precision: str = "auto") -> None:
        self.faces = faces
        self.face_model = face_model
        self.restorer = FaceRestorer(face_model, weights_dir, precision)
        self.detector = make_detector(faces.detector, weights_dir)
        self.embedder = embedder_for(faces, weights_dir)
        self.skip = {str(PurePosixPath(path)): list(indices) for path, indices in faces.skip.items()}

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.restore)

    def restore(self, row: Row) -> Row:
        if not pending(row) or row.get("kind") == "video":
            return row
        row["face_model"] = self.face_model
        try:
            with timed(row, "faces_s"):
                background = unpack_pixels(row)
                source_color, _ = split_alpha(decode_input(row).pixels)
                background_color, alpha = split_alpha(background)
                relative = str(PurePosixPath(row.get("relative") or ""))
                restored, records = restore_faces(
                    _as_rgb(source_color), _as_rgb(background_color), self.restorer, self.detector,
                    self.embedder, self.faces, skip=self.skip.get(relative, ()))
                row.update(face_count=len(records), faces=records_json(records))
                if any(record.action in ("restored", "blended") for record in records):
                    pack_pixels(row, merge_alpha(self._back_to_layout(restored, background_color), alpha, background))
        except Exception as error:  # noqa: BLE001 - the item fails, the actor lives on
            return fail(row, "faces", error)
        return row

    @staticmethod
    def _back_to_layout(restored: np.ndarray, background_color: np.ndarray) -> np.ndarray:
        """RGB result → the background's channel count; gray keeps untouched pixels bit for bit."""
        if background_color.shape[2] == 3:
            return restored
        luma = cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)[..., None]
        untouched = (restored == background_color).all(axis=2, keepdims=True)
        return np.where(untouched, background_color, luma)
