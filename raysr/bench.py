"""`raysr bench`: speed figures for this machine (benchmarks, never timed tests).

``engine`` times the bare forward of a real-size RRDBNet (23 blocks, the
RealESRGAN_x4plus shape; random init unless real weights are cached) in FP32
NCHW against the ``auto`` precision policy, and the engine end to end untiled
against tiled, and prints a table plus JSON.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from raysr.engine import EngineOptions, Upscaler
from raysr.engine.precision import pick_device, plan_precision, prepare_module
from raysr.models.load import LoadedModel, load_model
from raysr.models.registry import get_spec

# Multiply-adds per input pixel of RRDBNet x4 (23 blocks, 64 features, 32 growth).
_RRDBNET_X4_MACS_PER_PX = 17.9e6


def _time(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: oneDNN/cuDNN pick kernels on the first call
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _rrdbnet(weights_dir) -> tuple[LoadedModel, str]:
    try:
        return load_model("RealESRGAN_x4plus", weights_dir, sources=("cache",)), "real weights"
    except Exception:  # noqa: BLE001 - no cached weights: random init has the same speed
        from spandrel import ModelLoader
        from spandrel.architectures.ESRGAN import ESRGAN

        descriptor = ModelLoader().load_from_state_dict(ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4).state_dict())
        spec = get_spec("RealESRGAN_x4plus")
        return LoadedModel(spec, descriptor.model.eval(), None, "", "ESRGAN"), "random init"


def bench_engine(size: int = 128, repeats: int = 3, weights_dir=None, tile: int = 128) -> dict:
    """Time FP32 vs auto forward and untiled vs tiled engine runs on a ``size``² input."""
    loaded, origin = _rrdbnet(weights_dir)
    device = pick_device("auto")
    batch = torch.rand(1, 3, size, size, device=device)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}",
        "model": f"RRDBNet x4 23 blocks ({origin})",
        "input": f"{size}x{size}",
    }
    for name in ("fp32", "auto"):
        plan = plan_precision(name, device)
        module = prepare_module(loaded.module, plan)
        inputs = batch.to(plan.input_dtype)
        if plan.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        elif name == "fp32":
            inputs = inputs.contiguous()
            module = module.to(memory_format=torch.contiguous_format)

        def forward() -> None:
            with torch.inference_mode(), plan.autocast():
                module(inputs)

        seconds = _time(forward, repeats)
        results[f"forward_{name}_s"] = round(seconds, 3)
        results[f"forward_{name}_precision"] = plan.name
        results[f"forward_{name}_gmacs_per_s"] = round(_RRDBNET_X4_MACS_PER_PX * size * size / seconds / 1e9, 1)
    results["auto_speedup"] = round(results["forward_fp32_s"] / results["forward_auto_s"], 2)

    image = (np.random.default_rng(0).random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    untiled = Upscaler(loaded, EngineOptions(tile=size * 4))
    tiled = Upscaler(loaded, EngineOptions(tile=tile))
    results["engine_input"] = f"{size * 2}x{size * 2}"
    results["engine_untiled_s"] = round(_time(lambda: untiled.upscale(image), repeats), 3)
    results[f"engine_tile{tile}_s"] = round(_time(lambda: tiled.upscale(image), repeats), 3)
    results["tiling_overhead"] = round(results[f"engine_tile{tile}_s"] / results["engine_untiled_s"], 2)
    return results


def print_results(results: dict) -> None:
    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:{width}}  {value}")
    print(json.dumps(results))


def bench_video_path(clip=None, model: str = "realesr-animevideov3", repeats: int = 3, weights_dir=None) -> dict:
    """Frames/s of raysr's segment path vs a plain decode → model → encode loop, same clip and model."""
    import tempfile

    from raysr.video import bench_video

    if clip is None:
        from raysr.demo_data import write_demo_clip

        clip = write_demo_clip(tempfile.mkdtemp(prefix="raysr-bench-") + "/clip.mp4", seconds=4.0, size=(160, 96))
    upscaler = Upscaler(load_model(model, weights_dir), EngineOptions())
    results = bench_video(str(clip), lambda frame: upscaler.upscale(frame).image, repeats=repeats)
    return {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "model": model, "clip": str(clip), **results}
