"""Tiled inference without seams, in bounded memory.

The official Real-ESRGAN loop cuts the image into tiles, runs each with a few
pixels of context and pastes the centres side by side. A network whose
receptive field is wider than that context (RRDBNet's is ~100 px) then sees a
different neighbourhood on each side of a tile border, and the border shows.

Here every tile is a *window*: its *core* plus ``tile_pad`` pixels of real
context on each inner side. Windows all have one size (they batch together,
and a compiled model sees one shape) and are spread evenly across the image;
a border window gives its outer side to its core instead of to context the
image does not have, so no computed pixel is thrown away for lack of a
neighbour. Neighbouring cores overlap by ``tile_overlap`` pixels and are
cross-faded with complementary linear ramps, so the pixels computed nearest a
window's artificial edge count least. The weight of a tile is a product of two
1-D ramps, so the normalisation is the outer product of two 1-D sums: no
full-size weight map is ever built.

Output rows are finished one tile row at a time and converted to the output
dtype immediately, so the float accumulator holds about one band of rows.
"""

from __future__ import annotations

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
    """Cover ``[0, length)`` with the fewest same-size windows of at most ``tile + overlap + 2·pad``.

    Windows are spread evenly from one border to the other. Between two
    neighbours the seam sits in the middle of their shared pixels; each core
    reaches ``overlap / 2`` past it (the cross-fade) and keeps ``pad`` pixels of
    real context inside its window. Border windows give their outer side to
    the core (there is no context beyond the image to pay for), which is what
    makes all windows one size without computing pixels nobody uses.

    Args:
        length: image size along the axis, a multiple of ``multiple``.
        tile: core size; with the cross-fade and context it bounds the window
            (``tile + overlap + 2·pad``), so an axis no longer than that is one window.
        pad: context on each side of a core.
        overlap: width shared by neighbouring cores (at most ``tile / 2``).
        multiple: window starts and sizes are multiples of this (pixel-unshuffle,
            window attention).

    Example:
        >>> [(s.core_start, s.core_end, s.win_start, s.win_end) for s in plan_axis(100, 64, 8, 8)]
        [(0, 54, 0, 62), (46, 100, 38, 100)]
    """
    if length % multiple:
        raise ValueError(f"length {length} is not a multiple of {multiple}")
    pad_px, tile_px = _round_up(pad, multiple), _round_up(tile, multiple)
    # A cross-fade wider than half a core would let three tiles share pixels.
    half = min(_round_up(min(overlap, tile_px // 2) // 2, multiple), tile_px // 4 // multiple * multiple)
    seam_px = 2 * pad_px + 2 * half  # window pixels each seam costs: context + cross-fade
    max_window = tile_px + seam_px
    if length <= max_window:
        return [Span(0, length, 0, length)]
    # n windows of size w cover length + (n - 1) seams, so w <= max_window needs
    # n >= (length - seam_px) / tile_px; rounding may push w over, then n + 1 is tried.
    fewest = max(2, -(-(length - seam_px) // tile_px))
    for count in range(fewest, length // multiple + 1):
        window = _round_up(-(-(length + (count - 1) * seam_px) // count), multiple)
        while window <= max_window:
            spans = _place(length, count, window, pad_px, half, multiple)
            if spans:
                return spans
            window += multiple
    raise AssertionError(f"no tiling of {length} px with tile {tile}, pad {pad}, overlap {overlap}")


def _place(length: int, count: int, window: int, pad_px: int, half: int, multiple: int) -> list[Span]:
    """``count`` windows of ``window`` px spread evenly; ``[]`` when rounding leaves a core short of context."""
    travel = length - window
    starts = [round(index * travel / (count - 1)) // multiple * multiple for index in range(count)]
    starts[-1] = travel
    # Seam i is the middle of the pixels windows i and i + 1 share.
    seams = [(starts[i + 1] + starts[i] + window) // 2 // multiple * multiple for i in range(count - 1)]
    core_starts = [0] + [seam - half for seam in seams]
    core_ends = [seam + half for seam in seams] + [length]
    spans = [Span(core_starts[i], core_ends[i], starts[i], starts[i] + window) for i in range(count)]
    for index, span in enumerate(spans):
        if index and span.core_start - span.win_start < pad_px:
            return []
        if index < count - 1 and span.win_end - span.core_end < pad_px:
            return []
    # Each core's two cross-fades must not overlap, or three tiles would share pixels.
    if any(later - earlier < 2 * half for earlier, later in zip(seams, seams[1:])):
        return []
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
        tile, tile_pad, tile_overlap: see :func:`plan_axis`; an axis no longer than
            ``tile + tile_overlap + 2·tile_pad`` is one window.
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
