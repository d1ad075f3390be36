"""Peak memory of one big image (2048² → 8192² with x4plus by default): raysr's engine
against the official loop, each in a fresh process so neither sees the other's heap.

CPU: peak resident set (``VmHWM``, :func:`raysr.bench._child.peak_rss_bytes`) and the resident set just before the
image (model loaded, imports done); the difference is what the image costs.
CUDA: ``torch.cuda.max_memory_allocated`` during the image.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

from raysr.bench._child import peak_rss_bytes, report, run_child
from raysr.bench.engine import bench_photo, machine_line, machine_load


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_big_image(path: Path, size: int) -> Path:
    """A ``size``² RGB PNG of :func:`raysr.bench.engine.bench_photo`."""
    cv2.imwrite(str(path), cv2.cvtColor(bench_photo(size), cv2.COLOR_RGB2BGR))
    return path


def measure_raysr(image_path: str, model: str, weights_dir: str | None, tile: int | None, precision: str) -> None:
    """Child process: load, upscale one image with the engine, print peak memory as JSON."""
    import torch

    from raysr.engine import EngineOptions, Upscaler
    from raysr.models.load import load_model

    upscaler = Upscaler(load_model(model, weights_dir), EngineOptions(tile=tile, precision=precision))
    image = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    cuda = upscaler.device.type == "cuda"
    baseline = _current_rss_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats(upscaler.device)
    started = time.perf_counter()
    result = upscaler.upscale(image)
    seconds = time.perf_counter() - started
    report({
        "seconds": seconds, "precision": result.precision, "tile": result.tile, "output": list(result.image.shape),
        "peak_rss_bytes": peak_rss_bytes(), "baseline_rss_bytes": baseline,
        "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(upscaler.device) if cuda else None,
    })


def bench_memory(model: str = "RealESRGAN_x4plus", weights_dir: Path | None = None, size: int = 2048,
                 tile: int | None = 128, precision: str = "auto", with_official: bool = True,
                 bench_dir: Path | None = None, timeout_s: float | None = None) -> dict:
    """Peak memory of raysr vs the official loop on one ``size``² image (same weights and tile)."""
    from raysr.models.load import load_model

    loaded = load_model(model, weights_dir)
    gib = 1 << 30
    with tempfile.TemporaryDirectory(prefix="raysr-bench-mem-") as tmp:
        work = Path(tmp)
        image = write_big_image(work / "big.png", size)
        ours = run_child([sys.executable, "-c",
                          "from raysr.bench.memory import measure_raysr; "
                          f"measure_raysr({str(image)!r}, {model!r}, {str(weights_dir) if weights_dir else None!r}, "
                          f"{tile!r}, {precision!r})"], "memory bench child", timeout_s)
        results: dict = {
            "machine": machine_line(), "model": loaded.spec.name, "machine_load": machine_load(),
            "input": f"{size}x{size}", "output": "x".join(map(str, ours["output"][1::-1])), "tile": tile or "auto",
            "raysr_precision": ours["precision"], "raysr_s": ours["seconds"],
            "raysr_peak_rss_gib": ours["peak_rss_bytes"] / gib,
            "raysr_image_rss_gib": (ours["peak_rss_bytes"] - ours["baseline_rss_bytes"]) / gib,
        }
        if ours["cuda_max_allocated_bytes"] is not None:
            results["raysr_cuda_max_allocated_gib"] = ours["cuda_max_allocated_bytes"] / gib
        if with_official:
            from raysr.bench.official import official_python, run_official

            theirs = run_official(official_python(bench_dir), loaded, [image], tile or 0, work, warmup=False,
                                  timeout_s=timeout_s)
            results.update(
                official_precision="fp16" if theirs["half"] else "fp32", official_s=theirs["seconds"][0],
                official_peak_rss_gib=theirs["peak_rss_bytes"] / gib,
                official_image_rss_gib=(theirs["peak_rss_bytes"] - theirs["baseline_rss_bytes"]) / gib,
                peak_rss_ratio=ours["peak_rss_bytes"] / theirs["peak_rss_bytes"],
                image_rss_ratio=(ours["peak_rss_bytes"] - ours["baseline_rss_bytes"])
                / max(1, theirs["peak_rss_bytes"] - theirs["baseline_rss_bytes"]),
            )
            if theirs["cuda_max_allocated_bytes"] is not None and ours["cuda_max_allocated_bytes"] is not None:
                results["official_cuda_max_allocated_gib"] = theirs["cuda_max_allocated_bytes"] / gib
                results["cuda_max_allocated_ratio"] = ours["cuda_max_allocated_bytes"] / theirs["cuda_max_allocated_bytes"]
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in results.items()}
