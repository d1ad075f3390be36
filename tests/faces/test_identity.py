"""What the offline HOG embedder can and cannot tell apart (it guards against broken faces, not identity drift)."""

import cv2
import numpy as np
import pytest

from raysr.faces.align import estimate_alignment, warp_face
from raysr.faces.identity import FaceEmbedder, identity_score, make_embedder


@pytest.fixture(scope="module")
def aligned(astronaut, astronaut_face):
    return warp_face(astronaut.astype(np.float32) / 255.0, estimate_alignment(astronaut_face.landmarks))


def test_protocol(embedder):
    assert isinstance(embedder, FaceEmbedder) and make_embedder().name == embedder.name
    with pytest.raises(ValueError, match="hog-offline"):
        make_embedder("arcface")


def test_unit_norm_and_self_score(embedder, aligned):
    vector = embedder.embed(aligned)
    assert vector.dtype == np.float32 and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert identity_score(vector, vector) == pytest.approx(1.0, abs=1e-5)


def test_same_face_degraded_scores_higher_than_other_content(embedder, astronaut, aligned):
    reference = embedder.embed(aligned)
    blurred = identity_score(reference, embedder.embed(cv2.GaussianBlur(aligned, (0, 0), 2.0)))
    small = cv2.resize(cv2.resize(aligned, (64, 64), interpolation=cv2.INTER_AREA), (512, 512))
    downscaled = identity_score(reference, embedder.embed(small))
    other = cv2.resize(astronaut[300:500, 200:400].astype(np.float32) / 255.0, (512, 512))
    region = identity_score(reference, embedder.embed(other))
    upside_down = identity_score(reference, embedder.embed(aligned[::-1].copy()))
    noise = identity_score(reference, embedder.embed(np.random.default_rng(0).random((512, 512, 3), np.float32)))
    assert blurred > 0.85 and downscaled > 0.8
    assert max(region, upside_down, noise) < 0.3


def test_zero_vectors():
    assert identity_score(np.zeros(4), np.ones(4)) == 0.0


def test_bad_shape(embedder):
    with pytest.raises(ValueError, match="aligned"):
        embedder.embed(np.zeros((512, 512), np.float32))


def test_the_job_picks_arcface_when_identity_model_is_set(tmp_path):
    import torch

    from raysr.faces.arcface import ArcFaceEmbedder, ArcFaceResNet18
    from raysr.faces.identity import HogFaceEmbedder, embedder_for
    from raysr.job.spec import FacesSpec, parse_spec

    path = tmp_path / "arcface_resnet18.pth"
    torch.save(ArcFaceResNet18().state_dict(), path)
    assert isinstance(embedder_for(FacesSpec()), HogFaceEmbedder)
    assert isinstance(embedder_for(FacesSpec(identity_model=str(path))), ArcFaceEmbedder)
    # Unset, it stays out of the settings hash (specs written before it keep theirs); set, it changes it.
    base = {"name": "f", "inputs": ["in/"], "output": {"path": "out/"}, "faces": {"model": "GFPGANv1.4"}}
    plain = parse_spec(base)
    armed = parse_spec({**base, "faces": {"model": "GFPGANv1.4", "identity_model": str(path)}})
    assert plain.settings_hash("faces", {}) != armed.settings_hash("faces", {})
    with pytest.raises(Exception, match="no_such_file"):
        embedder_for(FacesSpec(identity_model=str(tmp_path / "no_such_file.pth")))
