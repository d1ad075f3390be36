"""FaceStage on hand-made rows; the restorer is a stand-in (GFPGAN itself runs in tests/faces/test_restore.py)."""

import json

import cv2
import numpy as np
import pytest

from raysr.job.spec import FacesSpec
from raysr.stages import faces as faces_stage
from raysr.stages._batch import pack_pixels, unpack_pixels


class DarkenRestorer:
    """Darkens the face a little: visible, and close enough to pass the identity guard."""

    name, applies_fidelity = "darken", False

    def __init__(self, model, weights_dir=None, precision="auto"):
        if model == "missing":
            raise ValueError("missing: weights not found")

    def restore(self, face, fidelity):
        return face * 0.8


@pytest.fixture
def stage(monkeypatch):
    monkeypatch.setattr(faces_stage, "FaceRestorer", DarkenRestorer)

    def build(**options):
        return faces_stage.FaceStage("GFPGANv1.4", FacesSpec(fidelity=0.0, **options))

    return build


def encoded(image) -> bytes:
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", bgr)[1].tobytes()


def row_for(image, background, relative="a/face.png"):
    row = {"data": encoded(image), "input_uri": f"/in/{relative}", "relative": relative}
    pack_pixels(row, background)
    return row


def test_columns_declared():
    assert set(faces_stage.FaceStage.writes) >= {"pixels", "face_model", "face_count", "faces", "faces_s"}
    assert "relative" in faces_stage.FaceStage.reads


def test_rgb_face_restored(stage, photo):
    background = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    row = stage().restore(row_for(photo, background))
    records = json.loads(row["faces"])
    assert row.get("status") is None and row["face_count"] == 1 and row["face_model"] == "GFPGANv1.4"
    assert records[0]["action"] == "restored" and row["faces_s"] > 0
    out = unpack_pixels(row)
    assert out.shape == background.shape and out.mean() < background.mean()


def test_gray_comes_back_gray(stage, photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    background = cv2.resize(gray, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    out = unpack_pixels(stage().restore(row_for(gray, background)))
    assert out.shape == background.shape and not np.array_equal(out, background)
    assert np.array_equal(out[800:], background[800:])


def test_alpha_kept_and_16_bit(stage, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)]).astype(np.uint16) * 257
    out = unpack_pixels(stage().restore(row_for(rgba, rgba)))
    assert out.dtype == np.uint16 and np.array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])


def test_skip_by_relative_path(stage, photo):
    row = stage(skip={"a/face.png": [0]}).restore(row_for(photo, photo))
    assert json.loads(row["faces"])[0]["action"] == "skipped"
    assert np.array_equal(unpack_pixels(row), photo)


def test_no_face_passes_through(stage):
    flat = np.full((64, 64, 3), 128, np.uint8)
    row = row_for(flat, flat)
    pixels = row["pixels"]
    row = stage().restore(row)
    assert row["face_count"] == 0 and row["faces"] == "[]" and row["pixels"] is pixels


def test_errors_become_row_fields(stage, photo):
    row = row_for(photo, np.zeros((100, 700, 3), np.uint8))
    row = stage().restore(row)
    assert row["status"] == "error" and row["error_stage"] == "faces" and "/in/a/face.png" in row["error_message"]


def test_failed_rows_untouched(stage):
    row = {"status": "error", "input_uri": "x"}
    assert stage().restore(dict(row)) == row


def test_batch_call(stage, photo):
    table = stage()({"data": np.array([encoded(photo)], dtype=object), "input_uri": np.array(["/in/x.png"]),
                     "relative": np.array(["x.png"]), **_pixel_columns(photo)})
    assert table.column("face_count").to_pylist() == [1]


def _pixel_columns(image):
    row = {}
    pack_pixels(row, image)
    return {key: np.array([value], dtype=object) for key, value in row.items()}
