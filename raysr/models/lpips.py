"""LPIPS v0.1 on AlexNet: the learned perceptual distance SR papers report (lower is closer).

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018. Written for raysr from the paper and a reading of the reference
implementation (BSD-2-Clause, Copyright (c) 2018 Richard Zhang, Phillip Isola, Alexei A. Efros,
Eli Shechtman, Oliver Wang), whose checkpoint key names it keeps:
https://github.com/richzhang/PerceptualSimilarity/blob/082bb24f84c091ea94de2867d34c4544f68e0963/lpips/lpips.py
and ``pretrained_networks.py`` beside it. No code was copied.

For a pair of RGB images of the same size, at full resolution (the reference's ``spatial=False``,
no resizing):

1. scale to [-1, 1], then ``(x - shift) / scale`` per channel, shift (-.030, -.088, -.188),
   scale (.458, .448, .450) (the v0.1 "ScalingLayer"; v0.0 lacked it);
2. torchvision's AlexNet ``features`` up to conv5; tap the ReLU outputs of conv1..conv5;
3. unit-normalise each tap over channels (``f / (||f||_2 + 1e-10)``), square the difference;
4. a 1x1 convolution without bias per level (the "lin" layers, non-negative in the release),
   mean over space;
5. sum the five levels.

Weights (registry entries, :mod:`raysr.models.registry`): ``lpips_alex_v0.1``, keys
``lin{0..4}.model.1.weight`` (``model.0`` is the reference's training-only dropout), and
``alexnet_imagenet``, torchvision's ``features.{i}.weight|bias`` (``classifier.*`` unused).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raysr.imageops._checks import check_image, to_float01
from raysr.models.load import ModelLoadError, read_state_dict
from raysr.weights.resolve import ResolvedWeights, WeightsError, default_weights_dir, resolve_weights

LIN_MODEL = "lpips_alex_v0.1"
BACKBONE_MODEL = "alexnet_imagenet"
MIN_SIDE = 31  # conv1 (11, stride 4) and two 3x3 stride-2 max-pools need 31 px to leave 1x1
_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_CHANNELS = (64, 192, 384, 256, 256)  # conv1..conv5 outputs
_TAPS = (1, 4, 7, 9, 11)  # indices of their ReLUs in AlexNet.features
_EPS = 1e-10


class _Backbone(nn.Module):
    """AlexNet ``features[0:12]`` in torchvision's layout (same indices, same key names)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                taps.append(x)
        return taps


class _Lin(nn.Module):
    """One level's 1x1 conv; ``model.0`` stands in for the reference's training dropout."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))


class _Lins(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for level, channels in enumerate(_CHANNELS):
            self.add_module(f"lin{level}", _Lin(channels))

    def levels(self) -> list[nn.Module]:
        return [getattr(self, f"lin{level}").model for level in range(len(_CHANNELS))]


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:  # missing/unexpected keys, shape mismatches
        detail = " ".join(str(error).split())[:400]
        raise ModelLoadError(f"{what} state dict does not fit LPIPS v0.1 AlexNet: {detail}") from None


class LPIPS:
    """LPIPS v0.1 (AlexNet) between two RGB images, in fp32.

    Args:
        backbone_state: AlexNet weights with torchvision's key names (``features.0.weight``,
            ...); keys outside ``features.0-11`` (``classifier.*``) are ignored.
        lin_state: the five lin layers, ``lin{0..4}.model.1.weight`` of shape ``(1, C, 1, 1)``.
        device: where the network runs; callers pick it with
            :func:`raysr.engine.precision.pick_device` (models do not import the engine).

    Raises:
        ModelLoadError: a state dict misses keys or has other shapes; the message lists them.

    Examples:
        >>> metric = LPIPS.from_registry()  # doctest: +SKIP
        >>> metric.distance(restored, reference)  # doctest: +SKIP
        0.2143
    """

    def __init__(
        self,
        backbone_state: Mapping[str, torch.Tensor],
        lin_state: Mapping[str, torch.Tensor],
        device: torch.device | str = "cpu",
    ) -> None:
        backbone, lins = _Backbone(), _Lins()
        kept = tuple(f"features.{index}." for index in range(len(backbone.features)))
        features = {key: value for key, value in backbone_state.items() if key.startswith(kept)}
        _load_strict(backbone, features, "AlexNet backbone")
        _load_strict(lins, lin_state, "LPIPS lin-layer")
        self.device = torch.device(device)
        self._backbone = backbone.to(self.device, torch.float32).eval().requires_grad_(False)
        self._lins = lins.to(self.device, torch.float32).eval().requires_grad_(False)
        self._shift = torch.tensor(_SHIFT, device=self.device).view(1, 3, 1, 1)
        self._scale = torch.tensor(_SCALE, device=self.device).view(1, 3, 1, 1)
        self.weights: tuple[ResolvedWeights, ...] = ()  # provenance; set by from_registry

    @classmethod
    def from_registry(
        cls,
        weights_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
        sources: tuple[str, ...] = ("cache", "pypi"),
    ) -> LPIPS:
        """Build it from the registry's ``alexnet_imagenet`` and ``lpips_alex_v0.1`` weights.

        Args:
            weights_dir: the weights cache; ``None``: :func:`~raysr.weights.resolve.default_weights_dir`.
            device: see the class.
            sources: resolver sources; the default never downloads (``pypi`` copies the file
                the installed ``lpips`` package ships into the cache).

        Raises:
            WeightsError: naming each file that did not resolve and the fetch command.
        """
        cache = Path(weights_dir) if weights_dir else default_weights_dir()
        resolved, failures = {}, []
        for name in (BACKBONE_MODEL, LIN_MODEL):
            try:
                resolved[name] = resolve_weights(name, cache, sources)
            except WeightsError as error:
                lines = str(error).splitlines()
                tried = [line.strip() for line in lines if line.startswith("  ")]  # the resolver's list
                failures.append((name, "; ".join(tried) or " ".join(lines)))
        if failures:
            names = " ".join(name for name, _ in failures)
            reasons = " | ".join(f"{name}: {reason}" for name, reason in failures)
            pip = f" (`pip install lpips` also provides {LIN_MODEL})" if LIN_MODEL in names else ""
            raise WeightsError(
                f"LPIPS weights unavailable in {cache} ({reasons}). Fix: `raysr weights fetch {names}` "
                f"on a machine that reaches the official URLs{pip}, then copy the files into the cache"
            )
        metric = cls(read_state_dict(resolved[BACKBONE_MODEL].path),
                     read_state_dict(resolved[LIN_MODEL].path), device)
        metric.weights = (resolved[BACKBONE_MODEL], resolved[LIN_MODEL])
        return metric

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """LPIPS between two images; 0.0 for identical ones, symmetric, about 0-1 in practice.

        Args:
            a, b: ``(H, W, 3)`` RGB, same shape, both sides >= :data:`MIN_SIDE`;
                ``uint8`` [0, 255], ``uint16`` [0, 65535] or ``float32|float64`` in [0, 1]
                (dtypes may differ). Gray or RGBA images: convert to RGB first.

        Raises:
            ValueError: another layout, dtype, size, a float outside [0, 1] or NaN; the
                message names the argument and gives its shape, dtype or range.
        """
        for name, image in (("a", a), ("b", b)):
            _check_rgb(image, name)
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}; resize one first")
        if min(a.shape[:2]) < MIN_SIDE:
            raise ValueError(f"LPIPS (AlexNet) needs both sides >= {MIN_SIDE} px, got shape {a.shape}")
        batch = torch.from_numpy(np.stack([to_float01(a), to_float01(b)])).to(self.device)
        with torch.inference_mode():
            x = (batch.permute(0, 3, 1, 2) * 2.0 - 1.0 - self._shift) / self._scale
            total = torch.zeros((), device=self.device)
            for tap, lin in zip(self._backbone(x), self._lins.levels()):
                unit = tap / (tap.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
                total = total + lin((unit[0:1] - unit[1:2]).pow(2)).mean()
        return float(total)


def _check_rgb(image: object, name: str) -> None:
    check_image(image, name, _DTYPES)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}; convert gray/RGBA to RGB first")
    if image.dtype.kind == "f":
        low, high = float(image.min()), float(image.max())
        if not (0.0 <= low and high <= 1.0):  # NaN fails both comparisons
            raise ValueError(f"{name} is {image.dtype} and must lie in [0, 1], got min {low} and max {high}")
