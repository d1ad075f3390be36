"""Load a model by registry name or path into a ready-to-run module.

spandrel detects the architecture from the state dict and builds the network;
raysr reads the file itself with ``torch.load(weights_only=True)`` (no pickle
code runs) and hands the tensors to spandrel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
from spandrel.__helpers.canonicalize import canonicalize_state_dict

from raysr.models.registry import ModelSpec, get_spec, is_registered
from raysr.weights.resolve import SOURCES, ResolvedWeights, resolve_weights


class ModelLoadError(RuntimeError):
    """A weights file could not be turned into a model."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the engine.

    Attributes:
        spec: registry entry (or one derived from the file for path models).
        module: the network in eval mode on CPU; ``None`` for classical resizers.
        weights: provenance of the weights file(s); ``None`` for classical.
        weights_sha256: digest recorded in the manifest (two digests joined with
            ``+`` and the blend weight for interpolated models).
        arch: detected architecture id (spandrel's), ``classical`` otherwise.
        supports_fp16 / supports_bf16: what the architecture can run in.
    """

    spec: ModelSpec
    module: torch.nn.Module | None
    weights: ResolvedWeights | None
    weights_sha256: str
    arch: str
    supports_fp16: bool = True
    supports_bf16: bool = True

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def is_classical(self) -> bool:
        return self.module is None


def load_state_strictly(net: torch.nn.Module, state: Mapping[str, torch.Tensor], origin: str, arch: str,
                        fix: str, error: type[Exception] = ModelLoadError) -> None:
    """Load a checkpoint's tensors into a network raysr defines itself (not via spandrel), exactly.

    A ``module.`` prefix (DataParallel) is stripped and BatchNorm counters absent from
    pre-0.4.1 checkpoints are filled in (unused in eval). Missing or unexpected keys and
    wrong shapes raise ``error``, naming ``origin``, ``arch`` and ``fix``.
    """
    state = {(key[len("module."):] if key.startswith("module.") else key): value for key, value in state.items()}
    expected = net.state_dict()
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state \
                and key[:-len("num_batches_tracked")] + "running_mean" in state:
            state[key] = value
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        found = [f"{len(names)} keys {kind} (e.g. {', '.join(names[:3])})"
                 for kind, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise error(f"{origin} is not a state dict of {arch}: {'; '.join(found)}. {fix}")
    wrong = [f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
             for key, value in expected.items() if tuple(state[key].shape) != tuple(value.shape)]
    if wrong:
        raise error(f"{origin}: tensors do not fit {arch} ({len(wrong)} wrong shapes, e.g. "
                    f"{'; '.join(wrong[:3])}). {fix}")
    net.load_state_dict(state, strict=True)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``.pth``/``.ckpt``/``.safetensors`` tensors without executing pickled code.

    Accepts the official layouts: ``params_ema``, ``params``, ``state_dict`` or bare.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle errors, zip errors, truncation
            raise ModelLoadError(
                f"{path}: not a loadable weights file ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}); re-fetch it or check the path"
            ) from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return canonicalize_state_dict(state)


def _install_extra_arches() -> None:
    """Let spandrel also detect the architectures of ``spandrel_extra_arches`` (CodeFormer, …),
    when ``raysr[extra-arches]`` is installed; their licenses are in the registry."""
    global _EXTRA_ARCHES_TRIED
    if _EXTRA_ARCHES_TRIED:
        return
    _EXTRA_ARCHES_TRIED = True
    try:
        import spandrel_extra_arches
    except ImportError:
        return
    spandrel_extra_arches.install(ignore_duplicates=True)


_EXTRA_ARCHES_TRIED = False


def _describe(state: dict[str, torch.Tensor], origin: str) -> ImageModelDescriptor:
    _install_extra_arches()
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        raise ModelLoadError(
            f"{origin}: spandrel does not recognise this architecture; raysr loads "
            "any architecture spandrel supports (ESRGAN, Compact, SwinIR, HAT, DAT, SPAN, …)"
        ) from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ModelLoadError(f"{origin}: is not an image-to-image model")
    return descriptor


def _blend_states(
    primary: dict[str, torch.Tensor], partner: dict[str, torch.Tensor], weight: float
) -> dict[str, torch.Tensor]:
    """Deep network interpolation: ``weight·primary + (1-weight)·partner``, key by key."""
    if primary.keys() != partner.keys():
        raise ModelLoadError("cannot blend weights of different architectures")
    return {key: weight * primary[key] + (1.0 - weight) * partner[key] for key in primary}


def load_model(
    model: str,
    weights_dir: str | Path | None = None,
    sources: tuple[str, ...] = SOURCES,
    denoise_strength: float | None = None,
    scale: int | None = None,
) -> LoadedModel:
    """Load a registry model or a user's weights file.

    Args:
        model: registry name, local path or ``s3://`` URI of a weights file.
        weights_dir: weights cache (see :func:`raysr.weights.default_weights_dir`).
        sources: where the resolver may look for registry weights.
        denoise_strength: for models with a denoise partner
            (``realesr-general-x4v3``): 1 keeps the model, 0 is the weak-denoise
            partner, in between interpolates the weights, as the official script does.
        scale: for classical resizers, the factor (default the registry's 4).

    Example:
        >>> loaded = load_model("bicubic", scale=2)
        >>> loaded.scale, loaded.is_classical
        (2, True)
    """
    if is_registered(model) and get_spec(model).is_classical:
        spec = get_spec(model)
        if scale is not None:
            if scale < 1:
                raise ValueError(f"scale must be >= 1 for {model}, got {scale}")
            spec = replace(spec, scale=scale)
        return LoadedModel(spec, None, None, "", "classical", True, True)

    if is_registered(model) and get_spec(model).arch == "diffusers":
        raise ModelLoadError(
            f"{model} is a diffusers pipeline, not a single network: name it as a route's model in a job "
            "spec (settings under `diffusion:`); `raysr upscale` runs single-network models only")
    resolved = resolve_weights(model, weights_dir, sources)
    state = read_state_dict(resolved.path)
    weights_sha256 = resolved.sha256
    spec = get_spec(model) if is_registered(model) else None
    if spec is not None and spec.blend_with and denoise_strength is not None:
        if not 0.0 <= denoise_strength <= 1.0:
            raise ValueError(f"denoise_strength must be in [0, 1], got {denoise_strength}")
        if denoise_strength < 1.0:
            partner = resolve_weights(spec.blend_with, weights_dir, sources)
            state = _blend_states(state, read_state_dict(partner.path), denoise_strength)
            weights_sha256 = f"{resolved.sha256}+{partner.sha256}@{denoise_strength:g}"
    descriptor = _describe(state, model)
    if spec is None:
        spec = ModelSpec(
            name=Path(model).stem,
            arch=descriptor.architecture.id,
            scale=descriptor.scale,
            filename=Path(model).name,
            size_multiple=descriptor.size_requirements.multiple_of,
            notes=f"user weights, detected {descriptor.architecture.name}",
        )
    elif descriptor.architecture.id != spec.arch or descriptor.scale != spec.scale:
        raise ModelLoadError(
            f"{model}: the file holds a x{descriptor.scale} {descriptor.architecture.id} "
            f"model, the registry expects x{spec.scale} {spec.arch}; the cached file is "
            "not this model"
        )
    if descriptor.input_channels not in (1, 3):
        raise ModelLoadError(
            f"{model}: models with {descriptor.input_channels} input channels are not supported"
        )
    spec = replace(
        spec,
        size_multiple=max(spec.size_multiple, descriptor.size_requirements.multiple_of),
        extra={**spec.extra, "input_channels": descriptor.input_channels,
               "min_size": descriptor.size_requirements.minimum},
    )
    module = descriptor.model.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(
        spec=spec,
        module=module,
        weights=resolved,
        weights_sha256=weights_sha256,
        arch=descriptor.architecture.id,
        supports_fp16=bool(descriptor.supports_half),
        supports_bf16=bool(descriptor.supports_bfloat16),
    )
