"""Dry-run estimates: output bytes and compute time, extrapolated from a small sample.

A few pending items per route are upscaled and encoded on the driver; their
seconds and bytes per input pixel scale to the whole route. The time is for the
driver's own device: on a cluster whose driver has no GPU it is an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysr.engine import Upscaler
from raysr.job.spec import JobSpec
from raysr.models.load import load_model
from raysr.sinks.encode import encode_image
from raysr.sources.decode import decode_image
from raysr.storage import read_bytes


@dataclass(frozen=True)
class RouteEstimate:
    route: str
    model: str
    items: int
    sampled: int
    output_bytes: float
    compute_s: float


def estimate(spec: JobSpec, pending: pa.Table, sample_per_route: int = 2) -> list[RouteEstimate]:
    """Estimate output size and compute time of the pending items, per route."""
    estimates = []
    for route in sorted(set(pending.column("route").to_pylist())):
        rows = pending.filter(pc.equal(pending.column("route"), route))
        pixels_total = float(pc.sum(pc.multiply(rows.column("width").cast(pa.int64()),
                                                rows.column("height").cast(pa.int64()))).as_py() or 0)
        model = spec.route_spec(route).model
        upscaler = Upscaler(load_model(model, spec.weights_dir, denoise_strength=spec.engine.denoise_strength), spec.engine)
        upscaler.upscale(np.zeros((32, 32, 3), np.uint8))  # warm-up: kernel selection is not per-item cost
        seconds = size = sampled_pixels = 0.0
        for row in rows.slice(0, sample_per_route).to_pylist():
            decoded = decode_image(read_bytes(row["input_uri"]), row["input_uri"])
            result = upscaler.upscale(decoded.pixels)
            encoded = encode_image(result.image, spec.output.format, spec.output.quality, decoded.metadata)
            seconds += result.seconds
            size += len(encoded.data)
            sampled_pixels += decoded.pixels.shape[0] * decoded.pixels.shape[1]
        ratio = pixels_total / sampled_pixels if sampled_pixels else 0.0
        estimates.append(RouteEstimate(route, model, rows.num_rows, min(sample_per_route, rows.num_rows),
                                       size * ratio, seconds * ratio))
    return estimates


def format_estimates(estimates: list[RouteEstimate]) -> str:
    lines = []
    for item in estimates:
        lines.append(
            f"  {item.route}: {item.items} items with {item.model}: ~{item.output_bytes / 1e6:.1f} MB out, "
            f"~{item.compute_s:.0f} s of compute on this machine (from {item.sampled} sampled)"
        )
    return "\n".join(lines)
