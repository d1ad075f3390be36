"""`raysr bench`: speed and memory figures for this machine (benchmarks, never timed tests).

- ``forward``: model-only items/s of any model at any input size and batch, eager and
  ``torch.compile``'d (the GPU ceiling; :func:`raysr.bench.engine.bench_forward`);
- ``engine``: bare forward FP32 vs the precision policy, tiled vs untiled, GEMM peak
  (:mod:`raysr.bench.engine`);
- ``seams``: tiled vs untiled output (PSNR, largest difference, time) per
  ``tile_pad / tile_overlap`` (:mod:`raysr.bench.seams`);
- ``pipeline``: bare forward vs `raysr upscale` vs `raysr run` on the same images,
  tile and precision (:mod:`raysr.bench.pipeline`);
- ``official``: the same plus the official ``RealESRGANer`` loop in its own venv
  (:mod:`raysr.bench.official`), as a ratio, with PSNR cross-checks;
- ``memory``: peak memory of one big image, raysr vs official (:mod:`raysr.bench.memory`);
- ``video``: raysr's segment path vs a sequential decode → model → encode loop;
- ``scaling``: `raysr run` with one model actor vs N, on a cluster or a local
  multi-node Ray (:mod:`raysr.bench.scaling`);
- ``post``: one core's time per item of colour, metrics and write, the CPU stages
  after the model (:mod:`raysr.bench.post`);
- ``items``: `raysr run` and its resume over many tiny images with no model time: the
  per-item cost of an archive job (:mod:`raysr.bench.items`).

Every command prints a table, then the same figures as one JSON line.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from raysr._lazy import lazy_attributes

__all__ = ["bench_engine", "bench_forward", "bench_items", "bench_memory", "bench_pipeline", "bench_post",
           "bench_scaling", "bench_seams", "bench_video_path", "print_results", "write_json"]

# Each benchmark loads on first use: `raysr --help` builds the bench parser (raysr.bench.cli)
# without importing torch.
__getattr__ = lazy_attributes(__name__, {
    "bench_engine": "raysr.bench.engine", "bench_forward": "raysr.bench.engine", "bench_items": "raysr.bench.items",
    "bench_memory": "raysr.bench.memory", "bench_post": "raysr.bench.post",
    "bench_pipeline": "raysr.bench.pipeline", "bench_scaling": "raysr.bench.scaling",
    "bench_seams": "raysr.bench.seams"})


def print_results(results: dict) -> None:
    """A two-column table per section (nested dicts are sections), then one JSON line."""
    sections = {key: value for key, value in results.items() if isinstance(value, dict)}
    flat = {key: value for key, value in results.items() if not isinstance(value, dict)}
    for title, section in ([("", flat)] if flat else []) + list(sections.items()):
        if title:
            print(f"\n[{title}]")
        width = max((len(key) for key in section), default=0)
        for key, value in section.items():
            print(f"{key:{width}}  {value}")
    print(json.dumps(results))


def write_json(results: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(results, indent=2) + "\n")


def bench_video_path(clip=None, model: str = "realesr-animevideov3", repeats: int = 3, weights_dir=None) -> dict:
    """Frames/s of raysr's segment path vs a plain decode → model → encode loop, same clip and model."""
    import tempfile

    import torch

    from raysr.engine import EngineOptions, Upscaler
    from raysr.models.load import load_model
    from raysr.video import bench_video

    if clip is None:
        from raysr.demo_data import write_demo_clip

        clip = write_demo_clip(tempfile.mkdtemp(prefix="raysr-bench-") + "/clip.mp4", seconds=4.0, size=(160, 96))
    upscaler = Upscaler(load_model(model, weights_dir), EngineOptions())
    results = bench_video(str(clip), lambda frame: upscaler.upscale(frame).image, repeats=repeats)
    return {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "model": model, "clip": str(clip), **results}
