"""Tiled inference without seams, in bounded memory.

The official Real-ESRGAN loop cuts the image into tiles, runs each with a few
pixels of context and pastes the centres side by side. A network whose
receptive field is wider than that context (RRDBNet's is ~100 px) then sees a
different neighbourhood on each side of a tile border, and the border shows.

Here every tile is a *window*: its *core* plus ``tile_pad`` pixels of real
context on each side (windows are shifted inward at image borders, so all
windows have one size and batch together). Neighbouring cores overlap by
``tile_overlap`` pixels and are cross-faded with complementary linear ramps,
so the pixels computed nearest a window's artificial edge count least. The
weight of a tile is a product of two 1-D ramps, so the normalisation is the
outer product of two 1-D sums: no full-size weight map is ever built.

Output rows are finished one tile row at a time and converted to the output
dtype immediately, so the float accumulator holds about one band of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in input pixels: ``[core_start, core_end)`` is the
    region the tile is responsible for, ``[win_start, win_end)`` what the model sees."""

    core_start: int
    core_end: int
    win_start: int
    win_end: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_axis(length: int, tile: int, pad: int, overlap: int, multiple: int = 1) -> list[Span]:
    """Split ``[0, length)`` into ``ceil(length / tile)`` cores with same-size windows.

    Cores first partition the axis into near-equal parts, then each grows by
    ``overlap / 2`` on its inner sides so neighbours share an ``overlap``-wide
    cross-fade. Windows add ``pad`` of context and are shifted inward at the
    image borders, so every window has the same size.

    Args:
        length: image size along the axis, a multiple of ``multiple``.
        tile: largest part before the overlap is added.
        pad: context on each side of a core.
        overlap: width shared by neighbouring cores.
        multiple: window starts and sizes are multiples of this (pixel-unshuffle,
            window attention).

    Example:
        >>> [(s.core_start, s.core_end, s.win_start, s.win_end) for s in plan_axis(100, 64, 8, 8)]
        [(0, 54, 0, 70), (46, 100, 30, 100)]
    """
    if length % multiple:
        raise ValueError(f"length {length} is not a multiple of {multiple}")
    if tile >= length:
        return [Span(0, length, 0, length)]
    count = math.ceil(length / tile)
    bounds = [min(round(index * length / count) // multiple * multiple, length) for index in range(count + 1)]
    # Cross-fades wider than half a tile would make cores overlap more than they own.
    half = _round_up(min(overlap, tile // 2) // 2, multiple)
    cores = [
        (max(bounds[i] - half, 0) if i else 0, min(bounds[i + 1] + half, length) if i < count - 1 else length)
        for i in range(count)
    ]
    window = min(max(end - start for start, end in cores) + 2 * _round_up(pad, multiple), length)
    spans = []
    for core_start, core_end in cores:
        win_start = min(max(core_start - _round_up(pad, multiple), 0), length - window)
        spans.append(Span(core_start, core_end, win_start, win_start + window))
    return spans


def axis_weights(spans: list[Span], index: int, scale: int) -> np.ndarray:
    """Blend weights of tile ``index`` over its core, in output pixels (float32, > 0).

    Ramps up over the overlap with the previous core and down over the overlap
    with the next one; complementary ramps sum to 1 where two cores overlap.
    """
    span = spans[index]
    weights = np.ones((span.core_end - span.core_start) * scale, dtype=np.float32)
    if index > 0:
        ramp = (spans[index - 1].core_end - span.core_start) * scale
        if ramp > 0:
            weights[:ramp] = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    if index + 1 < len(spans):
        ramp = (span.core_end - spans[index + 1].core_start) * scale
        if ramp > 0:
            weights[-ramp:] = np.minimum(
                weights[-ramp:], (np.arange(ramp, 0, -1, dtype=np.float32) - 0.5) / ramp
            )
    return weights


def _weight_sum(spans: list[Span], scale: int, length_out: int) -> np.ndarray:
    total = np.zeros(length_out, dtype=np.float32)
    for index, span in enumerate(spans):
        total[span.core_start * scale: span.core_end * scale] += axis_weights(spans, index, scale)
    return total


ForwardFn = Callable[[torch.Tensor], torch.Tensor]
"""(N, C, h, w) float tile batch → (N, C, h·s, w·s) float32 on the same device."""

FinishFn = Callable[[torch.Tensor], np.ndarray]
"""(C, rows, W·s) float32 in [0, 1] → (rows, W·s, C) numpy in the output dtype."""


def tiled_forward(
    image: torch.Tensor,
    forward: ForwardFn,
    scale: int,
    out: np.ndarray,
    finish: FinishFn,
    tile: int,
    tile_pad: int,
    tile_overlap: int,
    tile_batch: int = 1,
    multiple: int = 1,
) -> np.ndarray:
    """Run ``forward`` over ``image`` tile by tile and write the blended result into ``out``.

    Args:
        image: (1, C, H, W) float tensor on the compute device; H and W multiples of ``multiple``.
        forward: the model call (precision and fallbacks are the caller's).
        scale: the model's upscale factor.
        out: (H·s, W·s, C) array in the output dtype, filled row band by row band.
        finish: converts finished float rows to ``out``'s dtype (on device, then to host).
        tile, tile_pad, tile_overlap: see :func:`plan_axis`; ``tile`` ≥ the image
            means one untiled forward.
        tile_batch: windows per forward call.

    Returns:
        ``out``.
    """
    _, channels, height, width = image.shape
    spans_y = plan_axis(height, tile, tile_pad, tile_overlap, multiple)
    spans_x = plan_axis(width, tile, tile_pad, tile_overlap, multiple)
    device = image.device
    width_out = width * scale
    inv_sum_x = torch.from_numpy(1.0 / _weight_sum(spans_x, scale, width_out)).to(device)
    inv_sum_y = torch.from_numpy(1.0 / _weight_sum(spans_y, scale, height * scale)).to(device)
    weights_x = [torch.from_numpy(axis_weights(spans_x, j, scale)).to(device) for j in range(len(spans_x))]

    pending = torch.zeros((channels, 0, width_out), dtype=torch.float32, device=device)
    pending_start = 0
    for row_index, span_y in enumerate(spans_y):
        # 1. Grow the accumulator to cover this tile row's cores.
        row_end = span_y.core_end * scale
        band = torch.zeros((channels, row_end - pending_start, width_out), dtype=torch.float32, device=device)
        band[:, : pending.shape[1]] = pending
        weight_y = torch.from_numpy(axis_weights(spans_y, row_index, scale)).to(device)
        band_offset = span_y.core_start * scale - pending_start

        # 2. Run the windows of this row in batches and add their weighted cores.
        for batch_start in range(0, len(spans_x), tile_batch):
            batch_spans = spans_x[batch_start: batch_start + tile_batch]
            windows = torch.cat([
                image[:, :, span_y.win_start: span_y.win_end, sx.win_start: sx.win_end]
                for sx in batch_spans
            ])
            outputs = forward(windows)
            for offset, span_x in enumerate(batch_spans):
                core_y0 = (span_y.core_start - span_y.win_start) * scale
                core_x0 = (span_x.core_start - span_x.win_start) * scale
                core = outputs[
                    offset, :,
                    core_y0: core_y0 + (span_y.core_end - span_y.core_start) * scale,
                    core_x0: core_x0 + (span_x.core_end - span_x.core_start) * scale,
                ]
                weight = weight_y[:, None] * weights_x[batch_start + offset][None, :]
                band[:, band_offset: band_offset + core.shape[1],
                     span_x.core_start * scale: span_x.core_end * scale] += core * weight
            del outputs

        # 3. Rows above the next tile row's first core are final: normalise and emit.
        next_start = spans_y[row_index + 1].core_start * scale if row_index + 1 < len(spans_y) else row_end
        done = next_start - pending_start
        finished = band[:, :done] * inv_sum_y[pending_start:next_start, None] * inv_sum_x[None, :]
        out[pending_start:next_start] = finish(finished)
        pending = band[:, done:]
        pending_start = next_start
    return out
