"""ArcFace ResNet-18 (gray 128×128 → 512-d): the identity network GFPGAN trains with.

Provenance: written anew from reading GFPGAN's ``gfpgan/archs/arcface_arch.py``
(``ResNetArcFace(block='IRBlock', layers=(2, 2, 2, 2), use_se=False)``) at
https://github.com/TencentARC/GFPGAN/blob/996d1e3df972438bfffa87993f0f21d242125bdf/gfpgan/archs/arcface_arch.py
(Apache-2.0, Tencent ARC). The module tree reproduces the key names of the
checkpoint GFPGAN publishes,
https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth
(a plain state dict, keys possibly prefixed ``module.``); the code is raysr's own.

Network: conv 3×3 1→64 (no bias), BN, PReLU, max-pool 2 (128 → 64 px); four stages
of two IR blocks (64, 128, 256, 512 channels; stages 2-4 stride 2 → 8×8); BN,
dropout (identity in eval), linear 512·8·8 → 512, BatchNorm1d.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raysr.engine.precision import pick_device
from raysr.models.load import ModelLoadError, load_state_strictly, read_state_dict

#: GFPGAN's release of the weights this network loads.
WEIGHTS_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth"
INPUT_SIZE = 128
EMBEDDING_DIM = 512
_FIX = (f"Fix: point faces at GFPGAN's arcface_resnet18.pth ({WEIGHTS_URL}), a state dict of "
        "ResNetArcFace(block='IRBlock', layers=(2, 2, 2, 2), use_se=False).")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """Pre-BN residual block: BN → conv → BN → PReLU → conv(stride) → BN, + shortcut, → PReLU.

    One PReLU (one ``prelu.weight``) serves both activations, as upstream.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class ArcFaceResNet18(nn.Module):
    """``(N, 1, 128, 128)`` gray in [-1, 1] → ``(N, 512)`` (not normalised)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        widths, cin = (64, 128, 256, 512), 64
        for index, width in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(IRBlock(cin, width, stride), IRBlock(width, width)))
            cin = width
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, EMBEDDING_DIM)
        self.bn5 = nn.BatchNorm1d(EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(torch.flatten(x, 1)))


def load_arcface(path: str | Path) -> ArcFaceResNet18:
    """Read ``arcface_resnet18.pth`` (``weights_only``) into an eval-mode FP32 CPU network.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a state dict of this network (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ArcFace weights not found: {path}. {_FIX}")
    try:
        state = read_state_dict(path)  # weights_only; unwraps params/params_ema, as for every model
    except ModelLoadError as error:
        raise ValueError(f"{error}. {_FIX}") from None
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: holds values that are not tensors, not a state dict. {_FIX}")
    net = ArcFaceResNet18()
    load_state_strictly(net, state, str(path), "ArcFace ResNet-18", _FIX, ValueError)
    return net.eval().requires_grad_(False)


class ArcFaceEmbedder:
    """GFPGAN's ArcFace ResNet-18 behind the :class:`~raysr.faces.identity.FaceEmbedder` protocol.

    Preprocessing follows GFPGAN's identity loss (``gray_resize_for_identity`` in
    ``gfpgan/models/gfpgan_model.py``): gray = 0.2989 R + 0.5870 G + 0.1140 B, the
    WHOLE aligned crop resized bilinearly (``align_corners=False``, no antialias) to
    128×128, in [-1, 1]. ArcFace itself was trained on tighter 112/128 crops, so a
    centre crop of the 512 FFHQ crop would fit its training data better; raysr
    follows what GFPGAN does with these exact weights instead.

    Args:
        net: a loaded :class:`ArcFaceResNet18` (see :func:`load_arcface`).
        device: ``auto`` (CUDA when visible, else CPU), ``cpu``, ``cuda:0`` …

    Example:
        >>> embedder = ArcFaceEmbedder.from_file("/data/weights/arcface_resnet18.pth")  # doctest: +SKIP
        >>> embedder.embed(aligned_face).shape  # doctest: +SKIP
        (512,)
    """

    name = "arcface"

    def __init__(self, net: nn.Module, device: str | torch.device = "auto") -> None:
        self.device = pick_device(str(device))
        self.net = net.to(device=self.device, dtype=torch.float32).eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "auto") -> ArcFaceEmbedder:
        return cls(load_arcface(path), device=device)

    def embed(self, face: np.ndarray) -> np.ndarray:
        """One ``(S, S, 3)`` float RGB [0, 1] aligned crop → L2-normalised float32 ``(512,)``."""
        if not isinstance(face, np.ndarray) or face.ndim != 3 or face.shape[2] != 3 \
                or face.shape[0] != face.shape[1] or not np.issubdtype(face.dtype, np.floating):
            raise ValueError(f"face must be an aligned (S, S, 3) float RGB crop, got "
                             f"{getattr(face, 'dtype', type(face).__name__)} {getattr(face, 'shape', None)}")
        with torch.inference_mode():
            rgb = torch.from_numpy(np.ascontiguousarray(face, dtype=np.float32)).to(self.device)
            gray = (0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2])[None, None]
            gray = F.interpolate(gray, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            vector = self.net((gray - 0.5) / 0.5)[0].float()
            vector = vector / vector.norm().clamp_min(1e-12)
        return vector.cpu().numpy().astype(np.float32, copy=False)
