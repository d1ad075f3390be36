"""ArcFace ResNet-18 (GFPGAN's identity network): loading, checks and the embedder, on seeded random weights."""

import cv2
import numpy as np
import pytest
import torch

from raysr.faces.align import estimate_alignment, warp_face
from raysr.faces.arcface import ArcFaceEmbedder, ArcFaceResNet18, load_arcface
from raysr.faces.identity import FaceEmbedder, identity_score, make_embedder


def _random_state() -> dict[str, torch.Tensor]:
    """Seeded random weights of the real architecture; BN running stats perturbed a little (so loading them counts)."""
    torch.manual_seed(0)
    state = ArcFaceResNet18().state_dict()
    generator = torch.Generator().manual_seed(1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(0.01 * torch.randn(value.shape, generator=generator))
        elif key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=generator))
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _random_state()


@pytest.fixture(scope="module")
def weights(tmp_path_factory, state):
    """(bare, module.-prefixed) .pth files of the same weights."""
    folder = tmp_path_factory.mktemp("arcface")
    bare, prefixed = folder / "bare.pth", folder / "prefixed.pth"
    torch.save(state, bare)
    torch.save({f"module.{key}": value for key, value in state.items()}, prefixed)
    return bare, prefixed


@pytest.fixture(scope="module")
def embedder(weights) -> ArcFaceEmbedder:
    return ArcFaceEmbedder.from_file(weights[0], device="cpu")


@pytest.fixture(scope="module")
def aligned(astronaut, astronaut_face):
    return warp_face(astronaut.astype(np.float32) / 255.0, estimate_alignment(astronaut_face.landmarks))


def test_key_layout_matches_upstream(state):
    assert tuple(state["conv1.weight"].shape) == (64, 1, 3, 3) and "conv1.bias" not in state
    assert tuple(state["layer1.0.conv1.weight"].shape) == (64, 64, 3, 3) and "layer1.0.downsample.0.weight" not in state
    assert tuple(state["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(state["layer4.1.bn0.running_var"].shape) == (512,) and "layer4.1.prelu.weight" in state
    assert tuple(state["fc5.weight"].shape) == (512, 512 * 8 * 8) and "bn5.running_mean" in state
    assert not any(".se." in key for key in state)


def test_both_key_layouts_load_the_same_weights(weights, state):
    for path in weights:
        net = load_arcface(path)
        assert not net.training
        loaded = net.state_dict()
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_embedding_shape_norm_dtype_and_determinism(embedder, aligned):
    assert isinstance(embedder, FaceEmbedder) and embedder.name == "arcface"
    vector = embedder.embed(aligned)
    assert vector.shape == (512,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(vector, embedder.embed(aligned.copy()))


def test_face_differs_from_other_image(embedder, astronaut, aligned):
    reference = embedder.embed(aligned)
    other = cv2.resize(astronaut[300:500, 200:400].astype(np.float32) / 255.0, (512, 512))
    noise = np.random.default_rng(0).random((512, 512, 3), np.float32)
    blurred = identity_score(reference, embedder.embed(cv2.GaussianBlur(aligned, (0, 0), 2.0)))
    scores = [identity_score(reference, embedder.embed(image)) for image in (other, noise)]
    assert max(scores) < 0.9 and blurred > max(scores)  # random weights: only "depends on the content"


def test_bad_face_shape(embedder):
    with pytest.raises(ValueError, match="aligned"):
        embedder.embed(np.zeros((512, 512), np.float32))


def test_missing_key_is_refused_naming_the_file(tmp_path, state):
    path = tmp_path / "missing.pth"
    torch.save({key: value for key, value in state.items() if key != "fc5.weight"}, path)
    with pytest.raises(ValueError, match=r"missing\.pth.*missing.*fc5\.weight.*Fix:"):
        load_arcface(path)


def test_unexpected_key_is_refused(tmp_path, state):
    path = tmp_path / "extra.pth"
    torch.save({**state, "layer1.0.se.fc.0.weight": torch.zeros(4, 64)}, path)
    with pytest.raises(ValueError, match=r"extra\.pth.*unexpected.*se\.fc"):
        load_arcface(path)


def test_wrong_shape_is_refused_naming_the_file(tmp_path, state):
    path = tmp_path / "shape.pth"
    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"shape\.pth.*conv1\.weight \(64, 3, 3, 3\) != \(64, 1, 3, 3\)"):
        load_arcface(path)


def test_unreadable_file_is_refused_naming_the_fix(tmp_path, state):
    path = tmp_path / "cut.pth"
    buffer = tmp_path / "whole.pth"
    torch.save(state, buffer)
    path.write_bytes(buffer.read_bytes()[:4096])  # a download cut short
    with pytest.raises(ValueError, match=r"cut\.pth: not a loadable weights file.*Fix:"):
        load_arcface(path)


def test_wrapped_state_dict_loads(tmp_path, state):
    path = tmp_path / "wrapped.pth"
    torch.save({"params": state}, path)  # basicsr's layout
    assert isinstance(load_arcface(path), torch.nn.Module)


def test_absent_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_arcface(tmp_path / "absent.pth")


def test_make_embedder(weights, aligned, embedder):
    made = make_embedder("arcface", weights[1], device="cpu")
    assert isinstance(made, ArcFaceEmbedder)
    assert np.array_equal(made.embed(aligned), embedder.embed(aligned))
    assert make_embedder().name == "hog-offline"
    with pytest.raises(ValueError, match="weights_path"):
        make_embedder("arcface")
    with pytest.raises(ValueError, match="'hog-offline', 'arcface'"):
        make_embedder("facenet")
