"""Ensembles: further models of a route, each in its own actor pool, blended per pixel.

A route with ``ensemble: [{model: B, weight: 0.3}]`` runs its main model in the
upscale pool as usual, then every member in a pool of its own
(:class:`EnsembleMemberStage`, which appends its output to ``ensemble_pixels``),
then :class:`BlendStage` (a CPU task): every output is colour-corrected to the same
reference (the bicubic-upscaled input, with the route's colour method) and the
outputs are averaged with the configured weights. The colour stage then leaves
the blended row alone (its ``color_method`` is already set).
"""

from __future__ import annotations

import json

import numpy as np

from raysr.engine import EngineOptions
from raysr.imageops.color import correct_color
from raysr.imageops.resize import resize
from raysr.stages._batch import Batch, Row, decode_input, fail, map_rows, pack_pixels, pending, timed, unpack_pixels
from raysr.stages.color import color_method_for


class EnsembleMemberStage:
    """Run one ensemble member on an item; construct once per actor.

    Reads ``data, input_uri``; appends the output's bytes to ``ensemble_pixels`` and a
    description (model, weights sha256, precision) to ``ensemble``.
    """

    reads = ("data", "input_uri", "pixels_shape", "pixels_dtype")
    writes = ("ensemble_pixels", "ensemble", "upscale_s")

    def __init__(self, model: str, engine: EngineOptions, weights_dir: str | None = None,
                 timeout_s: float = 3600.0) -> None:
        from raysr.engine import Upscaler  # torch loads in the actor, never in the driver
        from raysr.models.load import load_model

        self.model = model
        self.loaded = load_model(model, weights_dir, denoise_strength=engine.denoise_strength)
        self.upscaler = Upscaler(self.loaded, engine)
        self.timeout_s = timeout_s

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.upscale)

    def upscale(self, row: Row) -> Row:
        if not pending(row) or row.get("kind") == "video":
            return row
        try:
            with timed(row, "upscale_s"):
                result = self.upscaler.upscale(decode_input(row).pixels, timeout_s=self.timeout_s)
            expected = tuple(int(size) for size in row["pixels_shape"])
            if result.image.shape != expected or str(result.image.dtype) != row["pixels_dtype"]:
                raise ValueError(
                    f"ensemble member {self.model!r} made a {result.image.shape} {result.image.dtype} output but the "
                    f"route's model made {expected} {row['pixels_dtype']}; ensemble members must share the scale")
        except Exception as error:  # noqa: BLE001 - the item fails, the actor lives on
            return fail(row, "upscale", error)
        row["ensemble_pixels"] = [*(row.get("ensemble_pixels") or []), np.ascontiguousarray(result.image).tobytes()]
        parts = json.loads(row.get("ensemble") or "[]")
        parts.append({"model": self.model, "weights_sha256": self.loaded.weights_sha256 or None,
                      "precision": result.precision})
        row["ensemble"] = json.dumps(parts)
        return row


def blend(outputs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Per-pixel weighted mean of same-shape images.

    Args:
        outputs: HxWxC arrays of one dtype (uint8 or uint16, or float in [0, 1]).
        weights: one per output, summing to 1.

    Returns:
        HxWxC array of the inputs' dtype (integers rounded and clipped to their range).
    """
    if len(outputs) != len(weights) or not outputs:
        raise ValueError(f"blend needs one weight per output, got {len(outputs)} outputs and {len(weights)} weights")
    shapes = {output.shape for output in outputs}
    if len(shapes) != 1:
        raise ValueError(f"blend needs outputs of one shape, got {sorted(shapes)}")
    total = np.zeros(outputs[0].shape, np.float64)
    for output, weight in zip(outputs, weights):
        total += weight * output.astype(np.float64)
    dtype = outputs[0].dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(total), info.min, info.max).astype(dtype)
    return total.astype(dtype)


class BlendStage:
    """Blend a route's ensemble outputs. Reads the main ``pixels`` and ``ensemble_pixels``;
    writes the blended ``pixels``, ``ensemble`` (models, weights, digests) and ``color_method``."""

    reads = ("pixels", "pixels_shape", "pixels_dtype", "ensemble_pixels", "ensemble", "data", "model", "route")
    writes = ("pixels", "ensemble", "color_method", "color_s")

    def __init__(self, weights_by_route: dict[str, list[tuple[str, float]]], colors: dict[str, str | None]) -> None:
        self.weights_by_route = weights_by_route  # route -> [(model, weight)], the main model first
        self.colors = colors  # route -> configured colour method (None: the main model's default)

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.blend)

    def blend(self, row: Row) -> Row:
        parts = self.weights_by_route.get(row.get("route"))
        if not pending(row) or not parts or row.get("kind") == "video":
            return row
        try:
            with timed(row, "color_s"):
                main = unpack_pixels(row)
                members = [np.frombuffer(data, dtype=main.dtype).reshape(main.shape) for data in row["ensemble_pixels"]]
                if len(members) != len(parts) - 1:
                    raise RuntimeError(f"ensemble expected {len(parts) - 1} member outputs, got {len(members)}")
                method = color_method_for(row["model"], self.colors.get(row["route"]))
                outputs = [main, *members]
                if method != "none":
                    reference = resize(decode_input(row).pixels, main.shape[:2], "bicubic")
                    outputs = [correct_color(output, reference, method) for output in outputs]
                pack_pixels(row, blend(outputs, [weight for _, weight in parts]))
            described = json.loads(row.get("ensemble") or "[]")
            row["ensemble"] = json.dumps([{"model": parts[0][0], "weight": parts[0][1],
                                           "weights_sha256": row.get("weights_sha256")},
                                          *({**member, "weight": weight} for member, (_, weight) in zip(described, parts[1:]))])
            row.update(color_method=method, ensemble_pixels=None)
        except Exception as error:  # noqa: BLE001
            return fail(row, "blend", error)
        return row
