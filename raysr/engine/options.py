"""Engine options: the one home of tiling, precision and output-size defaults.

`raysr upscale` flags, the job spec's ``engine`` block and the Python API all
build an :class:`EngineOptions`; no default is written anywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PrecisionName = Literal["auto", "fp32", "fp16", "bf16"]

TILE_LAYOUT = 2
"""Version of :func:`raysr.engine.tiling.plan_axis`'s window layout, part of the settings
hash: a layout that moves windows changes output pixels, so bump this with it and
resumed jobs redo their tiled items. 1: windows shifted inward at borders (until 2026-11-30);
2: fewest evenly spread windows, border windows without unused context."""


class EngineOptions(BaseModel):
    """How the engine runs a model over one image.

    Attributes:
        tile: core tile size in input pixels; a window (what the model sees) is at
            most ``tile + tile_overlap + 2·tile_pad``, and an image side no longer
            than that is not cut. ``None`` picks the largest tile that fits in free
            memory (the whole image when it fits).
        tile_pad: context pixels on each inner side of a tile. RRDBNet sees ~100 px,
            so less context moves its output at the seams: RealESRGAN_x4plus at tile
            128 on a 512² photo, FP32, is 56 dB PSNR from the untiled output with
            the defaults (largest error 31/255), 61 dB with 32 px (7/255, 1.14× the
            compute), 46 dB with the official 10 px crop-and-paste (README, "Seams").
        tile_overlap: width of the cross-fade between neighbouring tiles.
        tile_batch: windows per forward call; ``None`` = as many as fit (1 on CPU).
        min_tile: out-of-memory back-off halves the tile down to this floor.
        pre_pad: reflect padding added around the whole image before the model
            and cropped after (reduces border artefacts of some models).
        precision: ``auto`` (fp16 on CUDA, bf16 on bf16-capable CPUs, else fp32)
            or an explicit precision; ``fp32`` is the reference path.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        outscale: final scale relative to the input; ``None`` keeps the model's.
        alpha: how an alpha channel is upscaled: through the ``model`` (as a
            3-channel image) or with a ``classical`` bilinear filter.
        denoise_strength: for models with a denoise partner (realesr-general-x4v3).
        compile: run the model through ``torch.compile`` (inductor, static shapes).
            Pays off on long runs of same-size windows (a fixed ``tile``, video
            frames); each new window shape compiles again. Falls back to eager
            when compilation fails. Same precision, so not part of the settings hash.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tile: int | None = Field(default=None, ge=16)
    tile_pad: int = Field(default=24, ge=0)
    tile_overlap: int = Field(default=16, ge=0)
    tile_batch: int | None = Field(default=None, ge=1)
    min_tile: int = Field(default=16, ge=8)
    pre_pad: int = Field(default=0, ge=0)
    precision: PrecisionName = "auto"
    device: str = "auto"
    outscale: float | None = Field(default=None, gt=0, le=16)
    alpha: Literal["model", "classical"] = "model"
    denoise_strength: float | None = Field(default=None, ge=0, le=1)
    compile: bool = False

    @model_validator(mode="after")
    def _check_tile(self) -> "EngineOptions":
        if self.tile is not None and self.tile < self.min_tile:
            raise ValueError(f"tile ({self.tile}) must be >= min_tile ({self.min_tile})")
        return self

    def settings(self) -> dict:
        """The options that change output pixels, for the manifest's settings hash."""
        return {**self.model_dump(exclude={"device", "tile_batch", "min_tile", "compile"}),
                "tile_layout": TILE_LAYOUT}
