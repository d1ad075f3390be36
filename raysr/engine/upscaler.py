"""The engine: one loaded model, one image in, one upscaled image out.

Used unchanged by ``raysr upscale`` and by the Ray job's upscale actors; it
never imports Ray. Handles dtypes (uint8/uint16), channel layouts (gray, RGB,
RGBA), padding for architecture size rules, automatic tile size, out-of-memory
back-off, precision fallback and the final ``outscale`` resize.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raysr.engine.options import EngineOptions
from raysr.engine.precision import (
    CompiledForward,
    PrecisionPlan,
    configure_determinism,
    fp32_twin,
    free_memory_bytes,
    is_out_of_memory,
    pick_device,
    plan_precision,
    prepare_module,
    release_cached_memory,
)
from raysr.engine.tiling import tiled_forward
from raysr.imageops.resize import resize
from raysr.models.load import LoadedModel

_TILE_CANDIDATES = (2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY


class EngineError(RuntimeError):
    """An image could not be upscaled; the message says why and what to try."""


class EngineTimeoutError(EngineError):
    """An image ran past its deadline (checked between tile batches)."""

    kind = "timeout"


@dataclass(frozen=True)
class UpscaleResult:
    """An upscaled image and how it was made (manifest fields).

    Attributes:
        image: (H·s, W·s[, C]) in the input's dtype and channel layout.
        precision: precision the model ran in.
        precision_fallback_tiles: tiles rerun in FP32 because of NaN/inf.
        tile: tile size finally used (after any out-of-memory back-off).
        oom_retries: how many times the tile was halved.
        seconds: wall time of :meth:`Upscaler.upscale`.
    """

    image: np.ndarray
    precision: str
    precision_fallback_tiles: int
    tile: int
    oom_retries: int
    seconds: float


def max_value(dtype: np.dtype) -> float:
    """The white level of an integer image dtype (uint8 → 255, uint16 → 65535)."""
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise EngineError(f"images must be uint8 or uint16, got {dtype}")


class Upscaler:
    """Runs one model over images. Build once per process (or Ray actor), call per image.

    Example:
        >>> import numpy as np
        >>> from raysr.models.load import load_model
        >>> up = Upscaler(load_model("bicubic", scale=2), EngineOptions())
        >>> up.upscale(np.zeros((16, 16, 3), np.uint8)).image.shape
        (32, 32, 3)
    """

    def __init__(self, model: LoadedModel, options: EngineOptions | None = None) -> None:
        self.model = model
        self.options = options or EngineOptions()
        self.device = pick_device(self.options.device)
        self.plan: PrecisionPlan | None = None
        self._module: torch.nn.Module | None = None
        self._call: torch.nn.Module | CompiledForward | None = None
        self._twin: torch.nn.Module | None = None
        self._fallback_tiles = 0
        self._deadline: float | None = None
        if not model.is_classical:
            self.plan = plan_precision(
                self.options.precision, self.device, model.supports_fp16, model.supports_bf16
            )
            configure_determinism(self.device)
            self._module = prepare_module(model.module, self.plan)
            self._call = CompiledForward(self._module) if self.options.compile else self._module
            self._in_channels = int(model.spec.extra.get("input_channels", 3))

    # -- public ----------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.plan.name if self.plan else "fp32"

    @property
    def compiled(self) -> bool:
        """True while the model runs through ``torch.compile`` (asked for and not given up)."""
        return isinstance(self._call, CompiledForward) and self._call.failure is None

    def upscale(self, image: np.ndarray, timeout_s: float | None = None) -> UpscaleResult:
        """Upscale an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/uint16 RGB(A) image.

        ``timeout_s`` bounds the run cooperatively: it is checked before every
        tile batch, so a stuck item fails with :class:`EngineTimeoutError`
        instead of holding its actor (Ray Data runs stages in threads, where
        signals cannot interrupt).
        """
        started = time.perf_counter()
        self._deadline = started + timeout_s if timeout_s else None
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise EngineError(f"expected an (H, W[, 1|3|4]) image, got shape {image.shape}")
        max_value(image.dtype)
        scale = self.model.scale
        self._fallback_tiles = 0
        tile_used, retries = 0, 0
        if self.model.is_classical:
            height, width = image.shape[:2]
            out = resize(image, (height * scale, width * scale), self.model.spec.name)
        else:
            out, tile_used, retries = self._upscale_channels(image)
        out = self._apply_outscale(out, image.shape[:2])
        return UpscaleResult(
            image=out,
            precision=self.precision,
            precision_fallback_tiles=self._fallback_tiles,
            tile=tile_used,
            oom_retries=retries,
            seconds=time.perf_counter() - started,
        )

    # -- channel layouts -----------------------------------------------------------
    def _upscale_channels(self, image: np.ndarray) -> tuple[np.ndarray, int, int]:
        squeeze = image.ndim == 2
        pixels = image[:, :, None] if squeeze else image
        channels = pixels.shape[2]
        if channels == 4:
            color, alpha = pixels[:, :, :3], pixels[:, :, 3:]
        else:
            color, alpha = pixels, None
        color_out, tile, retries = self._run_rgb_or_gray(color)
        if alpha is not None:
            alpha_out = self._upscale_alpha(alpha, color_out.shape[:2])
            color_out = np.concatenate([color_out, alpha_out], axis=2)
        return (color_out[:, :, 0] if squeeze else color_out), tile, retries

    def _run_rgb_or_gray(self, pixels: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(H, W, 1|3) → (H·s, W·s, 1|3), converting gray to the model's channels and back."""
        gray = pixels.shape[2] == 1
        if self._in_channels == 3 and gray:
            out, tile, retries = self._run_with_backoff(np.repeat(pixels, 3, axis=2))
            weights = np.asarray(_GRAY_WEIGHTS, dtype=np.float32)
            luma = (out.astype(np.float32) @ weights)[:, :, None]
            return np.clip(np.rint(luma), 0, max_value(pixels.dtype)).astype(pixels.dtype), tile, retries
        if self._in_channels == 1 and not gray:
            planes = [self._run_with_backoff(pixels[:, :, c: c + 1]) for c in range(3)]
            return np.concatenate([p[0] for p in planes], axis=2), planes[0][1], planes[0][2]
        return self._run_with_backoff(pixels)

    def _upscale_alpha(self, alpha: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        maximum = max_value(alpha.dtype)
        if alpha.min() == maximum:  # fully opaque: nothing to upscale
            return np.full((*size_hw, 1), maximum, dtype=alpha.dtype)
        if self.options.alpha == "classical":
            return resize(alpha, size_hw, "bilinear")
        out, _, _ = self._run_with_backoff(np.repeat(alpha, 3, axis=2))
        return np.rint(out.astype(np.float32).mean(axis=2, keepdims=True)).astype(alpha.dtype)

    # -- tiles, memory and precision -------------------------------------------------
    def _auto_tile(self, height: int, width: int, batch: int) -> int:
        """Largest tile whose windows fit in half the free memory (a quarter of host RAM on CPU)."""
        element = 2 if self.plan.weight_dtype != torch.float32 or self.plan.autocast_dtype else 4
        # Activation estimate: ~3 live 64-channel maps at output resolution per input pixel.
        bytes_per_px = 3 * 64 * self.model.scale**2 * element + 1024
        share = 0.5 if self.device.type == "cuda" else 0.25
        budget = free_memory_bytes(self.device) * share
        longest = max(height, width)
        if height * width * bytes_per_px * batch <= budget:
            return max(longest, self.options.min_tile)
        # A window is at most tile + overlap + 2·pad (tiling.plan_axis).
        seam_px = self.options.tile_overlap + 2 * self.options.tile_pad
        for tile in _TILE_CANDIDATES:
            if tile < longest and (tile + seam_px) ** 2 * bytes_per_px * batch <= budget:
                return max(tile, self.options.min_tile)
        return self.options.min_tile

    def _tile_batch(self) -> int:
        if self.options.tile_batch is not None:
            return self.options.tile_batch
        return 4 if self.device.type == "cuda" else 1

    def _run_with_backoff(self, pixels: np.ndarray) -> tuple[np.ndarray, int, int]:
        height, width = pixels.shape[:2]
        batch = self._tile_batch()
        tile = self.options.tile or self._auto_tile(height, width, batch)
        retries = 0
        while True:
            try:
                return self._run(pixels, tile, batch), tile, retries
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                release_cached_memory(self.device)
                if tile <= self.options.min_tile:
                    raise EngineError(
                        f"out of memory even at the minimum tile size {self.options.min_tile} "
                        f"for a {width}x{height} image on {self.device}; free memory, lower "
                        "--tile-batch, or run fewer actors per GPU"
                    ) from None
                tile, batch, retries = max(tile // 2, self.options.min_tile), 1, retries + 1

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self._deadline is not None and time.perf_counter() > self._deadline:
            raise EngineTimeoutError("ran past its item timeout; raise limits.item_timeout_s or use a smaller tile")
        plan = self.plan
        inputs = batch.to(plan.input_dtype)
        if plan.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), plan.autocast():
            outputs = self._call(inputs)
        outputs = outputs.float()
        if plan.check_finite:
            bad = ~torch.isfinite(outputs).flatten(1).all(dim=1)
            if bool(bad.any()):
                outputs[bad] = self._rerun_fp32(batch[bad])
                self._fallback_tiles += int(bad.sum())
        return outputs

    def _rerun_fp32(self, batch: torch.Tensor) -> torch.Tensor:
        if self._twin is None:
            self._twin = fp32_twin(self._module, self.plan)
        inputs = batch.float()
        if self.plan.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._twin(inputs).float()

    def _run(self, pixels: np.ndarray, tile: int, batch: int) -> np.ndarray:
        """(H, W, C) uint → model → (H·s, W·s, C) same dtype, with padding handled."""
        height, width, channels = pixels.shape
        scale = self.model.scale
        maximum = max_value(pixels.dtype)
        tensor = torch.from_numpy(np.require(pixels, requirements=('C', 'W'))).to(self.device)
        tensor = (tensor.permute(2, 0, 1)[None].float() / maximum)
        # Reflect pre-pad, then pad bottom/right up to the size rules of the architecture.
        pre = self.options.pre_pad
        multiple = max(1, self.model.spec.size_multiple)
        minimum = int(self.model.spec.extra.get("min_size", 0))
        padded_h = max(-(-(height + 2 * pre) // multiple) * multiple, minimum)
        padded_w = max(-(-(width + 2 * pre) // multiple) * multiple, minimum)
        pad_bottom, pad_right = padded_h - height - pre, padded_w - width - pre
        if pre or pad_bottom or pad_right:
            mode = "reflect" if max(pre, pad_bottom) < height and max(pre, pad_right) < width else "replicate"
            tensor = F.pad(tensor, (pre, pad_right, pre, pad_bottom), mode=mode)
        out = np.empty((padded_h * scale, padded_w * scale, channels), dtype=pixels.dtype)
        out_dtype = torch.uint8 if pixels.dtype == np.uint8 else torch.int32

        def finish(rows: torch.Tensor) -> np.ndarray:
            quantized = (rows.clamp_(0, 1) * maximum).round_().to(out_dtype)
            return quantized.permute(1, 2, 0).cpu().numpy().astype(pixels.dtype, copy=False)

        tiled_forward(
            tensor, self._forward, scale, out, finish,
            tile=tile, tile_pad=self.options.tile_pad, tile_overlap=self.options.tile_overlap,
            tile_batch=batch, multiple=multiple,
        )
        top, left = pre * scale, pre * scale
        return np.ascontiguousarray(out[top: top + height * scale, left: left + width * scale])

    def _apply_outscale(self, out: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        outscale = self.options.outscale
        if outscale is None or outscale == self.model.scale:
            return out
        target = (max(1, round(input_hw[0] * outscale)), max(1, round(input_hw[1] * outscale)))
        method = "lanczos" if target[0] >= out.shape[0] else "area"
        return resize(out, target, method)
