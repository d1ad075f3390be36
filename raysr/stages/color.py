"""The colour-correction stage: pull the output's colours back to the input's.

The reference is the input upscaled with bicubic to the output size. The
method comes from the job (``stages.color``), else the route's model family
default in the registry (wavelet for photo models, none for anime models,
whose flat colours the models already keep).
"""

from __future__ import annotations

from raysr.imageops.color import correct_color
from raysr.models.registry import get_spec, is_registered
from raysr.stages._batch import (Batch, Row, bicubic_reference, fail, map_rows, pack_pixels, pending, timed,
                                unpack_pixels)


def color_method_for(model: str, configured: str | None) -> str:
    """The colour method a job uses for ``model``: configured, else the registry default."""
    if configured is not None:
        return configured
    return get_spec(model).color_correction if is_registered(model) else "none"


class ColorStage:
    """Reads ``pixels, data, model``; writes corrected ``pixels`` and ``color_method``."""

    reads = ("pixels", "pixels_shape", "pixels_dtype", "data", "model")
    writes = ("pixels", "color_method", "color_s")

    def __init__(self, methods: dict[str, str | None]) -> None:
        self.methods = methods  # route -> configured method (None = model default)

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.correct)

    def correct(self, row: Row) -> Row:
        if not pending(row) or row.get("kind") == "video" or row.get("color_method") is not None:
            return row  # (a set color_method: the blend stage already corrected each ensemble output)
        method = color_method_for(row["model"], self.methods.get(row.get("route")))
        row["color_method"] = method
        if method == "none":
            return row
        try:
            with timed(row, "color_s"):
                output = unpack_pixels(row)
                pack_pixels(row, correct_color(output, bicubic_reference(row, output.shape[:2]), method))
        except Exception as error:  # noqa: BLE001
            return fail(row, "color", error)
        return row
