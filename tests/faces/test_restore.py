import json

import cv2
import numpy as np
import pytest
import torch

from factories import random_gfpgan_state
from raysr.faces.restore import FaceRestorer, records_json, restore_faces
from raysr.job.spec import FacesSpec


@pytest.fixture(scope="module")
def gfpgan(tmp_path_factory):
    path = tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4-random.pth"
    torch.save({"params_ema": random_gfpgan_state()}, path)
    return FaceRestorer(str(path), precision="fp32")


class CopyRestorer:
    """Returns the aligned input face: paste-back must then be near invisible."""

    name, applies_fidelity = "copy", False

    def restore(self, face, fidelity):
        return face.copy()


class GarbageRestorer:
    name, applies_fidelity = "garbage", False

    def restore(self, face, fidelity):
        return np.random.default_rng(0).random(face.shape, dtype=np.float32)


def upscale2(image):
    return cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def gfpgan_run(gfpgan, astronaut, detector, embedder):
    background = upscale2(astronaut)
    image, records = restore_faces(astronaut, background, gfpgan, detector, embedder, FacesSpec(fidelity=0.0))
    return background, image, records


def test_loads_through_load_model(gfpgan):
    assert gfpgan.loaded.arch == "GFPGAN" and not gfpgan.applies_fidelity and not gfpgan.plan.channels_last


def test_gfpgan_end_to_end(gfpgan_run):
    background, image, records = gfpgan_run
    assert image.shape == background.shape and image.dtype == np.uint8
    assert len(records) == 1 and records[0].action in ("restored", "blended")
    assert records[0].identity is not None and -1 <= records[0].identity <= 1
    changed = np.argwhere((image != background).any(axis=2))
    assert len(changed) > 10_000
    y0, x0 = changed.min(axis=0)
    y1, x1 = changed.max(axis=0)
    box = np.array(records[0].box) * 2  # face box in background px
    # Only the face's neighbourhood changed: everything else is the background, bit for bit.
    assert x0 > box[0] - box[2] + box[0] and x1 < 2 * box[2] - box[0] + 10 and y1 < 2 * box[3] - box[1] + 10
    assert json.loads(records_json(records))[0]["index"] == 0


def test_copy_restorer_is_near_identical(astronaut, detector, embedder):
    background = upscale2(astronaut)
    image, records = restore_faces(astronaut, background, CopyRestorer(), detector, embedder, FacesSpec(fidelity=0.0))
    diff = np.abs(image.astype(int) - background.astype(int))
    assert records[0].action == "restored" and records[0].identity > 0.8
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) < 40


def test_identity_guard_blends_garbage(astronaut, detector, embedder):
    background = upscale2(astronaut)
    options = FacesSpec(fidelity=0.0, identity_threshold=0.5)
    image, records = restore_faces(astronaut, background, GarbageRestorer(), detector, embedder, options)
    assert records[0].action == "blended" and records[0].guard_weight > 0
    off, unguarded = restore_faces(astronaut, background, GarbageRestorer(), detector, embedder,
                                   FacesSpec(fidelity=0.0, identity_threshold=None))
    assert unguarded[0].action == "restored"
    assert np.abs(image.astype(int) - background).mean() < np.abs(off.astype(int) - background).mean()


def test_skip_and_too_small_leave_background(astronaut, detector, embedder):
    background = upscale2(astronaut)
    image, records = restore_faces(astronaut, background, GarbageRestorer(), detector, embedder, FacesSpec(), skip=[0])
    assert records[0].action == "skipped" and np.array_equal(image, background)
    image, records = restore_faces(astronaut, background, GarbageRestorer(), detector, embedder,
                                   FacesSpec(min_face_px=300))
    assert records[0].action == "too_small" and np.array_equal(image, background)


def test_only_center_face(astronaut, detector, embedder):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)[:, 100:]  # second face nearer the centre
    image, records = restore_faces(two, two, CopyRestorer(), detector, embedder, FacesSpec(only_center_face=True))
    assert len(records) == 2 and [r.action for r in records] == ["skipped", "restored"]


def test_uint16_stays_uint16(astronaut, detector, embedder):
    source = astronaut.astype(np.uint16) * 257
    image, records = restore_faces(source, source, GarbageRestorer(), detector, embedder,
                                   FacesSpec(identity_threshold=None))
    assert image.dtype == np.uint16 and records[0].action == "restored"
    assert np.array_equal(image[400:], source[400:]) and not np.array_equal(image, source)


def test_no_face_returns_background(detector, embedder):
    flat = np.full((64, 64, 3), 90, np.uint8)
    background = upscale2(flat)
    image, records = restore_faces(flat, background, GarbageRestorer(), detector, embedder, FacesSpec())
    assert records == [] and image is background


def test_shape_errors(astronaut, detector, embedder):
    with pytest.raises(ValueError, match="uniform upscale"):
        restore_faces(astronaut, np.zeros((1024, 600, 3), np.uint8), CopyRestorer(), detector, embedder, FacesSpec())
    with pytest.raises(ValueError, match="RGB"):
        restore_faces(astronaut[..., 0], astronaut[..., 0], CopyRestorer(), detector, embedder, FacesSpec())


def test_not_a_face_model(tmp_path, save_state):
    from factories import compact_state

    path = save_state(compact_state(), "compact.pth")
    with pytest.raises(ValueError, match="not a face restorer"):
        FaceRestorer(str(path))
