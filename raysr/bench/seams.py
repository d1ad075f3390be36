"""`raysr bench seams`: what tile context and cross-fade cost, and what they buy.

Runs one photo untiled, then tiled at each ``tile_pad / tile_overlap`` setting, and
reports the tiled output's PSNR against the untiled one, its largest difference in
8-bit levels, the window size and the time. The untiled output is the reference:
any difference is the seams' (the model and precision are the same).
"""

from __future__ import annotations

import time

import numpy as np

from raysr.bench.engine import bench_photo, machine_line, window_plan
from raysr.engine import EngineOptions, Upscaler
from raysr.imageops.metrics import psnr
from raysr.models.load import load_model

SEAM_SETTINGS = ((10, 0), (16, 16), (24, 16), (32, 16))
"""(tile_pad, tile_overlap) pairs: the official crop-and-paste, then raysr's with more context."""


def bench_seams(model: str = "RealESRGAN_x4plus", weights_dir=None, size: int = 512, tile: int = 128,
                precision: str = "auto", settings=SEAM_SETTINGS) -> dict:
    """Tiled vs untiled output of ``model`` on a ``size``² photo at each (tile_pad, tile_overlap).

    Example:
        >>> bench_seams(size=256, precision="fp32")["pad24_overlap16_psnr_db"]  # doctest: +SKIP
        58.5
    """
    loaded = load_model(model, weights_dir)
    image = bench_photo(size)
    whole = Upscaler(loaded, EngineOptions(tile=size, precision=precision))
    results: dict = {"machine": machine_line(whole.device), "model": model, "input": f"{size}x{size}", "tile": tile,
                     "precision": whole.precision}
    started = time.perf_counter()
    reference = whole.upscale(image).image
    results["untiled_s"] = round(time.perf_counter() - started, 2)
    for tile_pad, tile_overlap in settings:
        options = EngineOptions(tile=tile, tile_pad=tile_pad, tile_overlap=tile_overlap, precision=precision)
        started = time.perf_counter()
        tiled = Upscaler(loaded, options).upscale(image).image
        seconds = time.perf_counter() - started
        plan = window_plan(loaded, options, size, size)
        key = f"pad{tile_pad}_overlap{tile_overlap}"
        results.update({
            f"{key}_psnr_db": round(psnr(reference, tiled), 1),
            f"{key}_max_diff": int(np.abs(reference.astype(np.int16) - tiled).max()),
            f"{key}_windows": f"{plan['windows']} x {plan['window'][0]}x{plan['window'][1]}",
            f"{key}_s": round(seconds, 2),
        })
    return results
