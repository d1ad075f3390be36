"""RetinaFace ResNet-50: checkpoint key names, loading, priors, decoding, detection (random weights)."""

from __future__ import annotations

import math
import urllib.request

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from raysr.faces.detect import DetectorError, Face, FaceDetector, make_detector
from raysr.faces.retinaface import (
    MIN_SIZES, STEPS, VARIANCES, RetinaFaceDetector, RetinaFaceNet, decode_boxes, decode_landmarks, prior_boxes,
    to_network_input,
)

# facexlib's detection_Resnet50_Final.pth, keys after stripping "module." (from facexlib's
# retinaface.py / retinaface_net.py at 260620ae): torchvision ResNet-50 up to layer4 under
# "body." (IntermediateLayerGetter), FPN, 3 SSH, 3 heads x 3 levels, 2 anchors per location.
# BN layers carry num_batches_tracked: 456 keys in all, 383 without the counters.
OFFICIAL_KEY_COUNT = 456
OFFICIAL_KEYS_PER_MODULE = {"body": 318, "fpn": 30, "ssh1": 30, "ssh2": 30, "ssh3": 30,
                            "ClassHead": 6, "BboxHead": 6, "LandmarkHead": 6}
OFFICIAL_SHAPES = {
    "body.conv1.weight": (64, 3, 7, 7),
    "body.bn1.running_var": (64,),
    "body.layer1.0.conv1.weight": (64, 64, 1, 1),
    "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "body.layer2.3.conv3.weight": (512, 128, 1, 1),
    "body.layer3.5.bn2.num_batches_tracked": (),
    "body.layer4.2.conv3.weight": (2048, 512, 1, 1),
    "fpn.output1.0.weight": (256, 512, 1, 1),
    "fpn.output3.0.weight": (256, 2048, 1, 1),
    "fpn.merge1.0.weight": (256, 256, 3, 3),
    "fpn.merge2.1.running_mean": (256,),
    "ssh1.conv3X3.0.weight": (128, 256, 3, 3),
    "ssh2.conv5X5_1.0.weight": (64, 256, 3, 3),
    "ssh3.conv7X7_2.0.weight": (64, 64, 3, 3),
    "ssh3.conv7x7_3.1.bias": (64,),
    "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),
    "ClassHead.2.conv1x1.bias": (4,),
    "BboxHead.1.conv1x1.weight": (8, 256, 1, 1),
    "LandmarkHead.2.conv1x1.weight": (20, 256, 1, 1),
    "LandmarkHead.0.conv1x1.bias": (20,),
}
OFFICIAL_PARAMETERS = 27_351_584  # elements, counters excluded


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return RetinaFaceNet().state_dict()


@pytest.fixture(scope="module")
def detector(state) -> RetinaFaceDetector:
    return RetinaFaceDetector(state, device="cpu", score_threshold=0.0)


@pytest.fixture(scope="module")
def small_photo(astronaut) -> np.ndarray:
    """The astronaut at 128x96 (W x H), uint8 RGB."""
    return cv2.resize(astronaut, (128, 96), interpolation=cv2.INTER_AREA)


def test_key_names_and_shapes_match_the_official_checkpoint(state):
    assert len(state) == OFFICIAL_KEY_COUNT
    assert len([key for key in state if not key.endswith("num_batches_tracked")]) == 383
    per_module: dict[str, int] = {}
    for key in state:
        per_module[key.split(".")[0]] = per_module.get(key.split(".")[0], 0) + 1
    assert per_module == OFFICIAL_KEYS_PER_MODULE
    assert {key: tuple(state[key].shape) for key in OFFICIAL_SHAPES} == OFFICIAL_SHAPES
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) == OFFICIAL_PARAMETERS
    assert not any(key.startswith(("body.fc", "body.avgpool")) for key in state)


def test_module_prefix_and_missing_counters_load(state):
    prefixed = {f"module.{key}": value for key, value in state.items()}
    loaded = RetinaFaceDetector(prefixed, device="cpu").net.state_dict()
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    no_counters = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    RetinaFaceDetector(no_counters, device="cpu")


def test_wrong_checkpoint_is_refused(state):
    wrong = dict(state)
    del wrong["fpn.merge1.0.weight"]
    wrong["body.fc.weight"] = torch.zeros(1000, 2048)
    refused = r"detection_Resnet50_Final\.pth.*1 keys missing.*fpn\.merge1.*faces\.detector: cascade"
    with pytest.raises(DetectorError, match=refused):
        RetinaFaceDetector(wrong, device="cpu")
    three_anchors = dict(state, **{"ClassHead.0.conv1x1.weight": torch.zeros(6, 256, 1, 1)})
    with pytest.raises(DetectorError, match=r"ClassHead\.0\.conv1x1\.weight.*raysr weights fetch retinaface_resnet50"):
        RetinaFaceDetector(three_anchors, device="cpu")


def test_from_registry_offline_names_file_and_fix(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the detector must not download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    named = r"detection_Resnet50_Final\.pth(.|\n)*raysr weights fetch retinaface_resnet50"
    with pytest.raises(DetectorError, match=named):
        RetinaFaceDetector.from_registry(tmp_path)
    with pytest.raises(DetectorError, match="faces.detector: cascade"):
        make_detector("retinaface", str(tmp_path))
    (tmp_path / "detection_Resnet50_Final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match="sha256"):
        RetinaFaceDetector.from_registry(tmp_path)


def test_prior_count_and_values():
    priors = prior_boxes(480, 640)
    analytic = sum(len(sizes) * math.ceil(480 / step) * math.ceil(640 / step) for step, sizes in zip(STEPS, MIN_SIZES))
    assert analytic == 2 * (60 * 80 + 30 * 40 + 15 * 20) == 12600
    assert priors.shape == (analytic, 4) and priors.dtype == torch.float32
    first, second = priors[0].tolist(), priors[1].tolist()
    assert first == pytest.approx([4 / 640, 4 / 480, 16 / 640, 16 / 480])
    assert second == pytest.approx([4 / 640, 4 / 480, 32 / 640, 32 / 480])
    assert priors[-1].tolist() == pytest.approx([(19.5 * 32) / 640, (14.5 * 32) / 480, 512 / 640, 512 / 480])


def test_network_output_matches_priors(detector, small_photo):
    with torch.inference_mode():
        loc, scores, landmarks = detector.net(to_network_input(small_photo))
    count = prior_boxes(96, 128).shape[0]
    assert count == 2 * (12 * 16 + 6 * 8 + 3 * 4)
    assert loc.shape == (1, count, 4) and scores.shape == (1, count, 2) and landmarks.shape == (1, count, 10)
    assert torch.allclose(scores.sum(-1), torch.ones(1, count))


def test_decode_round_trip():
    generator = torch.Generator().manual_seed(1)
    priors = prior_boxes(96, 128)
    count = priors.shape[0]
    centers = torch.rand(count, 2, generator=generator)
    sides = torch.rand(count, 2, generator=generator) * 0.5 + 0.05
    boxes = torch.cat([centers - sides / 2, centers + sides / 2], dim=1)
    points = torch.rand(count, 5, 2, generator=generator)
    # Inverse of the decoder: the SSD/RetinaFace encoding.
    loc = torch.cat([(centers - priors[:, :2]) / (VARIANCES[0] * priors[:, 2:]),
                     torch.log(sides / priors[:, 2:]) / VARIANCES[1]], dim=1)
    offsets = ((points - priors[:, None, :2]) / (VARIANCES[0] * priors[:, None, 2:])).reshape(count, 10)
    assert torch.allclose(decode_boxes(loc, priors), boxes, atol=1e-5)
    assert torch.allclose(decode_landmarks(offsets, priors), points, atol=1e-5)


def test_input_is_bgr_minus_mean():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # R, G, B
    tensor = to_network_input(image)
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == torch.float32
    assert tensor[0, :, 0, 0].tolist() == [30 - 104, 20 - 117, 10 - 123]


def test_detect_end_to_end_random_weights(detector, small_photo):
    assert isinstance(detector, FaceDetector) and detector.name == "retinaface"
    faces = detector.detect(small_photo, min_face_px=0)
    assert faces and all(isinstance(face, Face) for face in faces)
    boxes = np.array([face.box for face in faces])
    assert ((boxes >= 0) & (boxes <= [128, 96, 128, 96])).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    scores = [face.score for face in faces]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= score <= 1.0 for score in scores)
    for face in faces:
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        assert not face.landmarks_estimated
    # NMS: no two kept boxes (before clipping) overlap above 0.4 (zero-area pairs give NaN IoU).
    kept, kept_scores, kept_landmarks = detector._detect_scaled(small_photo)
    assert kept.shape == (len(faces), 4) and kept_landmarks.shape == (len(faces), 5, 2)
    iou = box_iou(torch.from_numpy(kept), torch.from_numpy(kept)).fill_diagonal_(0).nan_to_num(0.0)
    assert iou.max() <= 0.4 + 1e-6
    assert np.allclose(kept_scores, scores)
    # min_face_px drops by the shorter box side, in input px.
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert len([side for side in sides if side >= 20]) == len(detector.detect(small_photo, min_face_px=20))


def test_threshold_above_one_finds_nothing(state, small_photo):
    strict = RetinaFaceDetector(state, device="cpu", score_threshold=1.01)
    assert strict.detect(small_photo, min_face_px=0) == []


def test_large_images_are_downsized_and_mapped_back(state, small_photo):
    capped = RetinaFaceDetector(state, device="cpu", score_threshold=0.0, max_side=64)
    faces = capped.detect(small_photo, min_face_px=0)
    boxes = np.array([face.box for face in faces])
    assert faces and boxes[:, [0, 2]].max() <= 128 and boxes[:, [1, 3]].max() <= 96
    assert boxes[:, [0, 2]].max() > 64  # in input px, not the 64 px scan's


def test_input_checks(detector, small_photo):
    tiny = np.ascontiguousarray(small_photo[:48, :64])
    assert detector.detect(cv2.cvtColor(tiny, cv2.COLOR_RGB2GRAY), min_face_px=0)
    assert detector.detect(np.dstack([tiny, np.full(tiny.shape[:2], 255, np.uint8)]), min_face_px=0)
    with pytest.raises(ValueError, match="image"):
        detector.detect(tiny.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="min_face_px"):
        detector.detect(tiny, min_face_px=-1)
    with pytest.raises(ValueError, match="nms_threshold"):
        RetinaFaceDetector({}, device="cpu", nms_threshold=0)
    with pytest.raises(ValueError, match="score_threshold"):
        RetinaFaceDetector({}, device="cpu", score_threshold=-0.1)
