"""The Stable Diffusion x4 upscaler as a raysr engine: one image in, one x4 image out.

Wraps diffusers' ``StableDiffusionUpscalePipeline``
(https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.py,
Apache-2.0) without changing it. What raysr adds:

- weights only from the weights cache (hub snapshot layout, :mod:`raysr.weights.hub`),
  loaded with ``local_files_only=True``: never a download at run time;
- device and precision from :mod:`raysr.engine.precision` (fp16 UNet and text
  encoder on CUDA, the VAE kept in fp32 as diffusers' ``force_upcast`` would;
  fp32 on CPU), a non-finite fp16 tile rerun in fp32;
- tiles of ``tile`` input px (SD x4 is trained on 128 px inputs; windows grow by the
  overlap, so at most ``tile + tile_overlap``) cross-faded over ``tile_overlap`` px by
  :func:`raysr.engine.tiling.tiled_forward`. The initial
  latent noise is one image-wide map drawn from ``seed``, so overlapping tiles
  start from the same noise; each tile's low-res conditioning noise comes from
  a generator seeded from ``(seed, tile index)``. Same seed, same image, same
  tile settings → same output;
- uint8/uint16, gray and RGBA in the engine's conventions (gray runs as RGB and
  returns its BT.601 luma; alpha is resized bicubically, it is not content).

The wavelet colour fix is not applied here: the job's colour stage applies the
registry's default (``wavelet`` for this model).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from raysr.engine.precision import (
    configure_determinism,
    is_out_of_memory,
    pick_device,
    plan_precision,
    release_cached_memory,
)
from raysr.engine.tiling import plan_axis, tiled_forward
from raysr.engine.upscaler import EngineError, EngineTimeoutError, UpscaleResult, max_value
from raysr.imageops._checks import from_float01
from raysr.imageops.metrics import luminance
from raysr.imageops.resize import resize
from raysr.job.spec import DiffusionSpec
from raysr.models.load import ModelLoadError
from raysr.models.registry import get_spec, is_registered
from raysr.weights.hub import resolve_snapshot, snapshot_digest
from raysr.weights.resolve import ResolvedWeights

if TYPE_CHECKING:
    from diffusers import StableDiffusionUpscalePipeline

SD_X4_UPSCALER = "stabilityai/stable-diffusion-x4-upscaler"
_EXTRA = "pip install 'raysr[diffusion]'"


def _pipeline_class() -> type[StableDiffusionUpscalePipeline]:
    try:
        from diffusers import StableDiffusionUpscalePipeline
    except ImportError as error:
        raise ModelLoadError(f"diffusion upscalers need diffusers and transformers ({error}); {_EXTRA}") from None
    return StableDiffusionUpscalePipeline


def _resolve_source(name_or_dir: str | Path, weights_dir: str | Path | None) -> tuple[Path, ResolvedWeights]:
    """A local diffusers folder as given, else a hub repo id from the weights cache."""
    folder = Path(name_or_dir).expanduser()
    if folder.is_dir():
        digest, _ = snapshot_digest(folder)
        return folder, ResolvedWeights(folder, digest, f"path:{folder}", "fp32", False)
    snapshot = resolve_snapshot(str(name_or_dir), weights_dir)
    return snapshot.path, snapshot.to_resolved_weights()


def _from_folder(folder: Path, label: str) -> StableDiffusionUpscalePipeline:
    pipeline_class = _pipeline_class()
    try:
        # No dtype argument: the fp32 safetensors load as stored and _place casts per component
        # (`torch_dtype` is deprecated in diffusers 0.42, `dtype` unknown to older releases).
        return pipeline_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(
            f"{label}: could not load a StableDiffusionUpscalePipeline from {folder}: {error}. "
            f"The snapshot is incomplete or not an SD x4 upscaler; fetch or import it again."
        ) from error


def load_diffusion_pipeline(
    name_or_dir: str | Path, weights_dir: str | Path | None = None
) -> StableDiffusionUpscalePipeline:
    """Load an SD x4 upscaler pipeline offline, in fp32 on the CPU.

    Args:
        name_or_dir: a local diffusers folder, or a hub repo id resolved in the
            weights cache (``stabilityai/stable-diffusion-x4-upscaler``).
        weights_dir: the cache; default :func:`~raysr.weights.resolve.default_weights_dir`.

    Returns:
        The pipeline; :class:`DiffusionUpscaler` moves and casts it.

    Raises:
        WeightsError: the snapshot is not in the cache (the message names the fix).
        ModelLoadError: diffusers missing, or the folder does not load.

    Example:
        >>> pipe = load_diffusion_pipeline("stabilityai/stable-diffusion-x4-upscaler")  # doctest: +SKIP
    """
    folder, _ = _resolve_source(name_or_dir, weights_dir)
    return _from_folder(folder, str(name_or_dir))


def _tile_seed(seed: int, index: int) -> int:
    """A 63-bit seed for tile ``index`` of a run seeded with ``seed`` (stable across processes)."""
    digest = hashlib.sha256(f"raysr-diffusion:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class DiffusionUpscaler:
    """Runs the SD x4 upscaler over images. Build once per process (or Ray actor), call per image.

    Args:
        source: a built ``StableDiffusionUpscalePipeline`` (tests), a local diffusers
            folder, or a hub repo id resolved offline in ``weights_dir``.
        spec: prompt, negative prompt, noise level, guidance, steps, seed and tiling;
            default ``DiffusionSpec()`` (the job spec is the one home of the defaults).
        weights_dir: cache for repo ids; default :func:`~raysr.weights.resolve.default_weights_dir`.
        precision: ``auto`` (fp16 on CUDA, else fp32), ``fp32``, ``fp16`` or ``bf16``,
            limited to the registry entry's precisions.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Attributes:
        weights: provenance of the snapshot (``None`` for a pipeline passed in).
        last_tiles: tiles the last :meth:`upscale` ran.

    Example:
        >>> up = DiffusionUpscaler(SD_X4_UPSCALER, DiffusionSpec(steps=20))  # doctest: +SKIP
        >>> up.upscale(np.zeros((64, 64, 3), np.uint8)).image.shape  # doctest: +SKIP
        (256, 256, 3)
    """

    def __init__(
        self,
        source: StableDiffusionUpscalePipeline | str | Path,
        spec: DiffusionSpec | None = None,
        *,
        weights_dir: str | Path | None = None,
        precision: str = "auto",
        device: str = "auto",
    ) -> None:
        self.spec = spec or DiffusionSpec()
        if self.spec.tile_overlap >= self.spec.tile:
            raise EngineError(
                f"diffusion.tile_overlap ({self.spec.tile_overlap}) must be smaller than diffusion.tile "
                f"({self.spec.tile}); e.g. tile 128 with tile_overlap 32"
            )
        self.weights: ResolvedWeights | None = None
        name = SD_X4_UPSCALER
        if isinstance(source, (str, Path)):
            folder, self.weights = _resolve_source(source, weights_dir)
            pipeline = _from_folder(folder, str(source))
            name = str(source)
        else:
            pipeline = source
        precisions = get_spec(name).precisions if is_registered(name) else get_spec(SD_X4_UPSCALER).precisions
        self.device = pick_device(device)
        self.plan = plan_precision(precision, self.device, "fp16" in precisions, "bf16" in precisions)
        configure_determinism(self.device)
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self._place(self.plan.weight_dtype)
        max_noise = int(pipeline.config.max_noise_level)
        if self.spec.noise_level > max_noise:
            raise EngineError(
                f"diffusion.noise_level must be <= {max_noise} for this model, got {self.spec.noise_level}"
            )
        unet_factor = 2 ** (len(pipeline.unet.config.block_out_channels) - 1)
        self._multiple = math.lcm(int(pipeline.vae_scale_factor), unet_factor)
        self._embeds: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._fallback_tiles = 0
        self._deadline: float | None = None
        self.last_tiles = 0

    # -- public -------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """Precision the UNet runs in (``fp16`` or ``fp32``), recorded per item."""
        return self.plan.name

    @property
    def scale(self) -> int:
        """Output / input size: the VAE's upsampling factor (4 for SD x4)."""
        return int(self.pipeline.vae_scale_factor)

    def upscale(self, image: np.ndarray, timeout_s: float | None = None) -> UpscaleResult:
        """Upscale an ``(H, W)``, ``(H, W, 1|3|4)`` uint8/uint16 RGB(A) image by :attr:`scale`.

        Args:
            image: input, gray or RGB(A), ``uint8`` [0, 255] or ``uint16`` [0, 65535].
            timeout_s: deadline checked before every tile and every denoising step;
                exceeded → :class:`~raysr.engine.upscaler.EngineTimeoutError`.

        Returns:
            ``UpscaleResult`` with ``(H·s, W·s[, C])`` in the input's dtype and layout.

        Raises:
            EngineError: bad shape or dtype, out of memory, timeout.
        """
        started = time.perf_counter()
        self._deadline = started + timeout_s if timeout_s else None
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise EngineError(f"expected an (H, W[, 1|3|4]) image, got shape {image.shape}")
        maximum = max_value(image.dtype)
        self._fallback_tiles = 0
        pixels = image[:, :, None] if image.ndim == 2 else image
        color, alpha = (pixels[:, :, :3], pixels[:, :, 3:]) if pixels.shape[2] == 4 else (pixels, None)
        gray = color.shape[2] == 1
        out = self._run_rgb(np.repeat(color, 3, axis=2) if gray else color, maximum)
        if gray:
            out = from_float01(luminance(out)[:, :, None], image.dtype)
        if alpha is not None:
            size = out.shape[:2]
            opaque = alpha.min() == maximum
            alpha_out = np.full((*size, 1), maximum, image.dtype) if opaque else resize(alpha, size, "bicubic")
            out = np.concatenate([out, alpha_out], axis=2)
        if image.ndim == 2:
            out = out[:, :, 0]
        return UpscaleResult(
            image=out, precision=self.precision, precision_fallback_tiles=self._fallback_tiles,
            tile=self.spec.tile, oom_retries=0, seconds=time.perf_counter() - started,
        )

    # -- device, dtype and prompt -----------------------------------------------------
    def _place(self, dtype: torch.dtype) -> None:
        """UNet and text encoder in ``dtype`` on the device; the VAE stays fp32 (it overflows in fp16).

        The plan's ``channels_last`` is not applied: unmeasured for diffusers' UNet (its
        attention blocks reshape to sequences), so the default layout is kept.
        """
        pipe = self.pipeline
        for module, wanted in ((pipe.unet, dtype), (pipe.text_encoder, dtype), (pipe.vae, torch.float32)):
            module.to(self.device)
            if module.dtype != wanted:  # casting warns in diffusers even when nothing changes
                module.to(dtype=wanted)

    def _prompt_embeds(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt (and negative prompt) embeddings, computed once per dtype instead of per tile."""
        if dtype not in self._embeds:
            with torch.inference_mode():
                self._embeds[dtype] = self.pipeline.encode_prompt(
                    self.spec.prompt, self.device, 1, self.spec.guidance_scale > 1.0,
                    self.spec.negative_prompt or None,
                )
        return self._embeds[dtype]

    # -- tiles ----------------------------------------------------------------------------
    def _check_deadline(self, *_: object) -> None:
        if self._deadline is not None and time.perf_counter() > self._deadline:
            raise EngineTimeoutError(
                "ran past its item timeout; raise limits.item_timeout_s, lower diffusion.steps or diffusion.tile"
            )

    def _call(self, window: torch.Tensor, latents: torch.Tensor, seed: int, dtype: torch.dtype) -> torch.Tensor:
        """One pipeline run: (1, 3, h, w) in [0, 1] → (1, 3, h·s, w·s) float32 in [0, 1]."""
        embeds, negative = self._prompt_embeds(dtype)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with torch.inference_mode(), self.plan.autocast():
            images = self.pipeline(
                image=window.to(dtype), prompt_embeds=embeds, negative_prompt_embeds=negative,
                num_inference_steps=self.spec.steps, guidance_scale=self.spec.guidance_scale,
                noise_level=self.spec.noise_level, generator=generator, latents=latents.to(dtype),
                output_type="pt", callback=self._check_deadline, callback_steps=1,
            ).images
        return images.float()

    def _rerun_fp32(self, window: torch.Tensor, latents: torch.Tensor, seed: int) -> torch.Tensor:
        """Rerun a tile whose fp16 output was NaN/inf with the UNet and text encoder in fp32."""
        self._place(torch.float32)
        try:
            return self._call(window, latents, seed, torch.float32)
        finally:
            self._place(self.plan.weight_dtype)

    def _run_rgb(self, rgb: np.ndarray, maximum: float) -> np.ndarray:
        """(H, W, 3) uint → tiles through the pipeline → (H·s, W·s, 3) same dtype."""
        height, width = rgb.shape[:2]
        scale, multiple = self.scale, self._multiple
        tensor = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None].float() / maximum
        # 1. Pad bottom/right to the size rule (VAE and UNet factors); cropped at the end.
        padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        if (padded_h, padded_w) != (height, width):
            mode = "reflect" if padded_h - height < height and padded_w - width < width else "replicate"
            tensor = F.pad(tensor, (0, padded_w - width, 0, padded_h - height), mode=mode)
        # 2. The tile grid tiled_forward will walk (row-major, one window per call). As in the
        #    engine, `tile` is the core and windows are at most tile + tile_overlap: an axis that
        #    fits is one window; longer ones get the fewest same-size windows that cover them.
        tile = max(self.spec.tile, multiple)
        spans_y = plan_axis(padded_h, tile, 0, self.spec.tile_overlap, multiple)
        spans_x = plan_axis(padded_w, tile, 0, self.spec.tile_overlap, multiple)
        generator = torch.Generator(device="cpu").manual_seed(self.spec.seed)
        channels = int(self.pipeline.vae.config.latent_channels)
        noise = torch.randn((1, channels, padded_h, padded_w), generator=generator).to(self.device)
        counter = iter(range(len(spans_y) * len(spans_x)))

        def forward(window: torch.Tensor) -> torch.Tensor:
            index = next(counter)
            span_y, span_x = spans_y[index // len(spans_x)], spans_x[index % len(spans_x)]
            latents = noise[:, :, span_y.win_start: span_y.win_end, span_x.win_start: span_x.win_end]
            self._check_deadline()
            seed = _tile_seed(self.spec.seed, index)
            out = self._call(window, latents, seed, self.plan.weight_dtype)
            if self.plan.check_finite and not bool(torch.isfinite(out).all()):
                out = self._rerun_fp32(window, latents, seed)
                self._fallback_tiles += 1
            return out

        out = np.empty((padded_h * scale, padded_w * scale, 3), dtype=rgb.dtype)
        out_dtype = torch.uint8 if rgb.dtype == np.uint8 else torch.int32

        def finish(rows: torch.Tensor) -> np.ndarray:
            quantized = (rows.clamp_(0, 1) * maximum).round_().to(out_dtype)
            return quantized.permute(1, 2, 0).cpu().numpy().astype(rgb.dtype, copy=False)

        # 3. Run and cross-fade; the overlap is shared by construction, no extra context pad.
        try:
            tiled_forward(
                tensor, forward, scale, out, finish, tile=tile, tile_pad=0,
                tile_overlap=self.spec.tile_overlap, tile_batch=1, multiple=multiple,
            )
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            release_cached_memory(self.device)
            raise EngineError(
                f"out of memory running {self.spec.tile}px diffusion tiles of a {width}x{height} image on "
                f"{self.device}; lower diffusion.tile (e.g. {max(self.spec.tile // 2, 32)}) or run one actor per GPU"
            ) from None
        self.last_tiles = len(spans_y) * len(spans_x)
        return np.ascontiguousarray(out[: height * scale, : width * scale])
