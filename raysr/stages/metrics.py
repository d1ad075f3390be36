"""The metrics stage: quality figures that need no downloads, and flags.

- LR-consistency: the output downscaled (area) to the input size vs the input (PSNR, SSIM).
- Sharpness: variance of the Laplacian of the output's luminance.
- Colour shift: mean CIE76 ΔE between the output and the bicubic-upscaled input.
- Reference: PSNR/SSIM against a ground-truth image of the same relative name, when given.

Thresholds in the spec mark an item ``flagged``; it is still written.
"""

from __future__ import annotations

from pathlib import Path

from raysr.imageops.metrics import lr_consistency, mean_delta_e, psnr, sharpness, ssim
from raysr.imageops.resize import resize
from raysr.sources.decode import decode_image
from raysr.stages._batch import (Batch, Row, bicubic_reference, decode_input, fail, map_rows, pending, timed,
                                unpack_pixels)
from raysr.storage import read_bytes

# Mean ΔE over at most ~a million pixels (every 2nd of a 2048² output): its LAB conversions were
# 110 of the stage's 165 ms there, and the mean moves by well under 1 %.
_DELTA_E_PIXELS = 1 << 20


class MetricsStage:
    """Reads ``pixels, data``; writes the metric columns and may set ``flagged``."""

    reads = ("pixels", "pixels_shape", "pixels_dtype", "data", "relative")
    writes = ("lr_psnr", "lr_ssim", "sharpness", "delta_e", "ref_psnr", "ref_ssim", "status",
              "flag_reasons", "metrics_s")

    def __init__(self, flag_lr_psnr_below: float | None = None, flag_delta_e_above: float | None = None,
                 reference_dir: str | None = None) -> None:
        self.flag_lr_psnr_below = flag_lr_psnr_below
        self.flag_delta_e_above = flag_delta_e_above
        self.reference_dir = reference_dir

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.measure)

    def _reference(self, row: Row, shape: tuple[int, ...]):
        if not self.reference_dir:
            return None
        uri = f"{self.reference_dir.rstrip('/')}/{row['relative']}"
        if not uri.startswith("s3://") and not Path(uri).is_file():
            return None
        reference = decode_image(read_bytes(uri), uri, max_pixels=1 << 62, min_side=1).pixels
        return reference if reference.shape == shape else resize(reference, shape[:2], "area")

    def measure(self, row: Row) -> Row:
        if not pending(row) or row.get("kind") == "video":
            return row
        try:
            with timed(row, "metrics_s"):
                output = unpack_pixels(row)
                source = decode_input(row, keep=True).pixels
                consistency = lr_consistency(output, source)
                row.update(lr_psnr=consistency["psnr"], lr_ssim=consistency["ssim"], sharpness=sharpness(output),
                           delta_e=mean_delta_e(output, bicubic_reference(row, output.shape[:2]), _DELTA_E_PIXELS))
                reference = self._reference(row, output.shape)
                if reference is not None:
                    row.update(ref_psnr=psnr(output, reference), ref_ssim=ssim(output, reference))
        except Exception as error:  # noqa: BLE001
            return fail(row, "metrics", error)
        reasons = []
        if self.flag_lr_psnr_below is not None and row["lr_psnr"] < self.flag_lr_psnr_below:
            reasons.append(f"lr_psnr {row['lr_psnr']:.1f} < {self.flag_lr_psnr_below:g}")
        if self.flag_delta_e_above is not None and row["delta_e"] > self.flag_delta_e_above:
            reasons.append(f"delta_e {row['delta_e']:.1f} > {self.flag_delta_e_above:g}")
        if reasons:
            row.update(status="flagged", flag_reasons="; ".join(reasons))
        return row
