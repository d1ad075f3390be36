"""RetinaFace with a ResNet-50 body: the face detector of the official GFPGAN pipeline.

Provenance: written anew from reading facexlib's ``facexlib/detection/retinaface.py``,
``retinaface_net.py`` and ``retinaface_utils.py`` at
https://github.com/xinntao/facexlib/tree/260620ae93990a300f4b16448df9bb459f1caba9
(MIT, Xintao Wang; itself from biubug6/Pytorch_Retinaface, MIT). The module tree
reproduces the key names of facexlib's checkpoint ``detection_Resnet50_Final.pth``
(registry ``retinaface_resnet50``, license recorded there); the code is raysr's.

What :meth:`RetinaFaceDetector.detect` does with one image:

1. RGB uint8 → BGR float32 minus the BGR mean (104, 117, 123), NCHW: the network
   was trained on OpenCV (BGR) images and GFPGAN feeds it ``cv2.imread`` output.
2. Native size, as GFPGAN calls it (``use_origin_size=True``). Only an image whose
   long side exceeds :data:`MAX_SIDE` (facexlib's own ``max_size`` bound) is
   downsized (area) to it, to bound CPU time and memory on huge photos; boxes and
   landmarks are scaled back to input pixels.
3. The network gives, per prior, a box offset, a face probability and five
   landmark offsets; priors are 2 square anchors per location at strides 8/16/32
   (:func:`prior_boxes`), decoded with variances (0.1, 0.2) (:func:`decode_boxes`).
4. Keep ``score > score_threshold`` (default :data:`SCORE_THRESHOLD`), then NMS
   at IoU :data:`NMS_THRESHOLD` (``torchvision.ops.nms``), best first.
5. Boxes are clipped to the image; landmarks are not (a face cut by the border
   keeps its true eye positions for alignment).

Precision: always FP32 on the device :func:`raysr.engine.precision.pick_device`
picks. The net (27 M parameters) runs once per image, a small cost beside the
restorer; FP16 would round the logits that the 0.97 cut is applied to and the
landmark offsets the alignment is built from, and the registry lists FP32 only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from raysr.engine.precision import pick_device
from raysr.faces.detect import DetectorError, Face
from raysr.imageops._checks import check_image
from raysr.models.load import ModelLoadError, load_state_strictly, read_state_dict
from raysr.models.registry import get_spec
from raysr.weights.resolve import WeightsError, resolve_weights

#: Registry name of the checkpoint.
WEIGHTS_NAME = "retinaface_resnet50"
#: Anchor sides in px per pyramid level, and the levels' strides.
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
#: Box-coding variances (centre, size).
VARIANCES = (0.1, 0.2)
#: GFPGAN's FaceRestoreHelper passes 0.97; facexlib's ``detect_faces`` default is 0.8.
SCORE_THRESHOLD = 0.97
NMS_THRESHOLD = 0.4
#: Longer inputs are downsized to this long side before detection (facexlib's max_size).
MAX_SIDE = 2150
_MEAN_BGR = (104.0, 117.0, 123.0)
_ANCHORS = 2
_FIX = (f"Fix: on a machine with access run `raysr weights fetch {WEIGHTS_NAME}` (or `raysr weights fetch "
        f"{WEIGHTS_NAME} --source /path/to/detection_Resnet50_Final.pth`) and ship the weights cache to the "
        "workers, or set faces.detector: cascade")


def _conv_bn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
    """Conv (no bias) + BN [+ ReLU]: keys ``.0.weight`` and ``.1.*`` as upstream.

    Upstream writes ``LeakyReLU(negative_slope=0)`` for 256 channels, which is ReLU.
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Body(nn.Module):
    """torchvision's ResNet-50 up to ``layer4`` (no pool, no fc), keys as IntermediateLayerGetter's."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, 3, H, W)`` → layer2/3/4 outputs: 512/1024/2048 channels at strides 8/16/32."""
        c3 = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class _FPN(nn.Module):
    """Top-down pyramid: 1x1 lateral convs to 256 channels, nearest upsampling, 3x3 merges."""

    def __init__(self, in_channels: tuple[int, int, int] = (512, 1024, 2048), out_channels: int = 256) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, True)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, True)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, True)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, True)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, True)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> list[torch.Tensor]:
        p5 = self.output3(c5)
        p4 = self.merge2(self.output2(c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest"))
        p3 = self.merge1(self.output1(c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class _SSH(nn.Module):
    """SSH context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated, ReLU."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        quarter = channels // 4
        self.conv3X3 = _conv_bn(channels, channels // 2, 3, False)
        self.conv5X5_1 = _conv_bn(channels, quarter, 3, True)
        self.conv5X5_2 = _conv_bn(quarter, quarter, 3, False)
        self.conv7X7_2 = _conv_bn(quarter, quarter, 3, True)
        self.conv7x7_3 = _conv_bn(quarter, quarter, 3, False)  # lower-case x: the checkpoint's spelling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5 = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(branch5))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(branch5), branch7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor; ``(N, C, h, w)`` → ``(N, h*w*2, values)``."""

    def __init__(self, channels: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, _ANCHORS * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


class RetinaFaceNet(nn.Module):
    """RetinaFace ResNet-50: body, FPN, three SSH modules, class/box/landmark heads.

    ``state_dict()`` keys equal those of facexlib's ``detection_Resnet50_Final.pth``
    after its ``module.`` prefix is stripped (456 keys, BN counters included).
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.fpn = _FPN()
        self.ssh1, self.ssh2, self.ssh3 = _SSH(), _SSH(), _SSH()
        self.ClassHead = nn.ModuleList(_Head(256, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(_Head(256, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(_Head(256, 10) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-prior predictions, priors in :func:`prior_boxes` order.

        Args:
            x: ``(N, 3, H, W)`` float32, BGR minus :data:`_MEAN_BGR` (see :func:`to_network_input`).

        Returns:
            ``loc (N, P, 4)`` box offsets, ``scores (N, P, 2)`` softmax (column 1 = face),
            ``landmarks (N, P, 10)`` landmark offsets.
        """
        levels = self.fpn(*self.body(x))
        features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), levels)]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks


def prior_boxes(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Anchors of a ``height`` x ``width`` input, in the network's output order.

    Level by level (strides :data:`STEPS`), row by row, column by column, then the
    level's two sizes (:data:`MIN_SIZES`); not clipped.

    Returns:
        ``(P, 4)`` float32 ``(cx, cy, w, h)`` as fractions of the width/height,
        ``P = 2 * sum(ceil(H / s) * ceil(W / s))``.
    """
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        centers = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        sides = torch.tensor([[size / width, size / height] for size in sizes], dtype=torch.float64)
        levels.append(torch.cat([centers, sides.expand(rows * cols, -1, -1)], dim=-1).reshape(-1, 4))
    return torch.cat(levels).to(device=device, dtype=torch.float32)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Box offsets → corners: ``(P, 4)`` offsets and ``(P, 4)`` priors → ``(P, 4)`` ``(x1, y1, x2, y2)``
    as fractions of the image (centre moves by ``v0 * prior side``, size scales by ``exp(v1 * t)``)."""
    centers = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    sides = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centers - sides / 2, centers + sides / 2], dim=1)


def decode_landmarks(offsets: torch.Tensor, priors: torch.Tensor,
                     variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Landmark offsets ``(P, 10)`` → ``(P, 5, 2)`` ``(x, y)`` as fractions of the image."""
    points = offsets.reshape(-1, 5, 2)
    return priors[:, None, :2] + points * variances[0] * priors[:, None, 2:]


def to_network_input(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB → ``(1, 3, H, W)`` float32 BGR minus the BGR mean (104, 117, 123)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).to(device)
    mean = torch.tensor(_MEAN_BGR, dtype=torch.float32, device=tensor.device)
    return (tensor.float() - mean).permute(2, 0, 1).unsqueeze(0).contiguous()


def _rgb_u8(image: np.ndarray) -> np.ndarray:
    check_image(image, "image", (np.uint8,))
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50) behind the :class:`~raysr.faces.detect.FaceDetector` interface.

    Args:
        state_dict: the checkpoint's tensors (a ``module.`` prefix is stripped);
            loaded strictly.
        device: ``auto`` (CUDA when visible, else CPU), ``cpu``, ``cuda:0`` …
        score_threshold: keep priors whose face probability is above this (>= 0;
            values >= 1 keep nothing).
        nms_threshold: IoU above which the weaker of two boxes is dropped, in (0, 1].
        max_side: long side images are downsized to before detection; ``None`` never.
        origin: what the weights are, for error messages (the file path).

    Example:
        >>> detector = RetinaFaceDetector.from_registry("/data/weights")  # doctest: +SKIP
        >>> [face.box for face in detector.detect(image_rgb_u8)]  # doctest: +SKIP
    """

    name = "retinaface"

    def __init__(self, state_dict: Mapping[str, torch.Tensor], device: str | torch.device = "auto",
                 score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = NMS_THRESHOLD,
                 max_side: int | None = MAX_SIDE, origin: str = "the given state dict") -> None:
        if not score_threshold >= 0:
            raise ValueError(f"score_threshold must be >= 0, got {score_threshold}")
        if not 0 < nms_threshold <= 1:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 px or None, got {max_side}")
        self.score_threshold, self.nms_threshold, self.max_side = score_threshold, nms_threshold, max_side
        self.device = pick_device(str(device))
        self.net = RetinaFaceNet()
        load_state_strictly(self.net, state_dict, origin,
                            "RetinaFace ResNet-50 (facexlib's detection_Resnet50_Final.pth)", _FIX, DetectorError)
        self.net.to(device=self.device, dtype=torch.float32).eval().requires_grad_(False)

    @classmethod
    def from_registry(cls, weights_dir: str | Path | None = None, device: str | torch.device = "auto",
                      sources: tuple[str, ...] = ("cache",)) -> RetinaFaceDetector:
        """Build from the registry's ``retinaface_resnet50`` weights.

        Args:
            weights_dir: the weights cache (default :func:`raysr.weights.resolve.default_weights_dir`).
            device: as in the constructor.
            sources: where :func:`~raysr.weights.resolve.resolve_weights` may look;
                the cache only by default: every actor builds a detector, and
                fetching is an explicit ``raysr weights fetch`` step.

        Raises:
            DetectorError: the file is absent, fails its sha256, or is not loadable;
                the message names the file and the fix.
        """
        filename = get_spec(WEIGHTS_NAME).filename
        try:
            resolved = resolve_weights(WEIGHTS_NAME, weights_dir, sources)
            state = read_state_dict(resolved.path)
        except (WeightsError, ModelLoadError) as error:
            reason = str(error).split("\nFix:")[0]  # the resolver's own fix offers a path, not valid here
            raise DetectorError(
                f"faces.detector: retinaface needs {filename} (registry {WEIGHTS_NAME}) and could not "
                f"load it: {reason}\n{_FIX}") from None
        return cls(state, device=device, origin=str(resolved.path))

    def detect(self, image: np.ndarray, min_face_px: int = 24) -> list[Face]:
        """Faces in ``image``, best score first.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (gray, 1- and 4-channel uint8 are accepted too).
            min_face_px: drop faces whose shorter box side is below this, input px
                (the default matches :class:`~raysr.faces.detect.FaceDetector`'s).

        Returns:
            :class:`Face` list in input px: boxes clipped to the image, scores in
            [0, 1], landmarks ``(5, 2)`` float32 in ``LANDMARK_NAMES`` order, regressed.
        """
        if min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0, got {min_face_px}")
        pixels = _rgb_u8(image)
        height, width = pixels.shape[:2]
        # 1. Native size unless the long side exceeds max_side.
        factor = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            factor = self.max_side / max(height, width)
            size = (max(round(width * factor), 1), max(round(height * factor), 1))
            pixels = cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA)
        # 2. Network, threshold, decode, NMS, all in the scanned image's px.
        boxes, scores, landmarks = self._detect_scaled(pixels)
        # 3. Back to input px, clip boxes, size filter.
        boxes, landmarks = boxes / factor, landmarks / factor
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        faces = []
        for box, score, points in zip(boxes, scores, landmarks):
            if min(box[2] - box[0], box[3] - box[1]) < min_face_px:
                continue
            faces.append(Face(tuple(float(v) for v in box), float(score), points.astype(np.float32), False))
        return faces

    def _detect_scaled(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(H, W, 3)`` uint8 RGB → boxes ``(K, 4)``, scores ``(K,)``, landmarks ``(K, 5, 2)``.

        float32 numpy in the given image's px, best first, boxes not clipped.
        """
        height, width = pixels.shape[:2]
        with torch.inference_mode():
            loc, probabilities, offsets = self.net(to_network_input(pixels, self.device))
            scores = probabilities[0, :, 1]
            keep = scores > self.score_threshold
            priors = prior_boxes(height, width, self.device)[keep]
            scale = torch.tensor([width, height], dtype=torch.float32, device=self.device)
            boxes = decode_boxes(loc[0][keep], priors) * scale.repeat(2)
            landmarks = decode_landmarks(offsets[0][keep], priors) * scale
            scores = scores[keep]
            finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(landmarks).flatten(1).all(dim=1)
            boxes, scores, landmarks = boxes[finite], scores[finite], landmarks[finite]
            order = torchvision.ops.nms(boxes, scores, self.nms_threshold)
            return (boxes[order].cpu().numpy(), scores[order].cpu().numpy(), landmarks[order].cpu().numpy())
