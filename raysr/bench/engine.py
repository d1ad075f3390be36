"""Model-level figures: the bare forward, FP32 against the precision policy, and the
machine's attainable multiply-add rate (a GEMM microbenchmark).

``bench_engine`` times the bare forward of a real-size RRDBNet (23 blocks, the
RealESRGAN_x4plus shape; random init unless real weights are cached) in FP32
NCHW against the ``auto`` precision policy, and the engine end to end untiled
against tiled.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from raysr.engine import EngineOptions, Upscaler
from raysr.engine.precision import (CompiledForward, PrecisionPlan, cpu_supports_bf16, pick_device, plan_precision,
                                    prepare_module)
from raysr.engine.tiling import plan_axis
from raysr.models.load import LoadedModel, load_model
from raysr.models.registry import get_spec

# Multiply-adds per input pixel of RRDBNet x4 (23 blocks, 64 features, 32 growth).
_RRDBNET_X4_MACS_PER_PX = 17.9e6


def machine_line(device: torch.device | None = None) -> str:
    """One line naming the machine: CPU or GPU, torch threads, device."""
    device = device or pick_device("auto")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {device}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}"


def machine_load() -> str:
    """1-minute load average and, on Linux, CPU pressure (share of time runnable work waited):
    other work on the machine skews every figure, so each report carries this."""
    line = f"load {os.getloadavg()[0]:.2f}"
    try:
        with open("/proc/pressure/cpu") as handle:
            some = handle.readline().split()  # some avg10=.. avg60=.. avg300=.. total=..
        line += f", cpu pressure avg60 {some[2].split('=')[1]}%"
    except OSError:
        pass
    return line


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(call: Callable[[], object], repeats: int, device: torch.device | None = None) -> float:
    """Median wall time of ``call`` after one warm-up call (oneDNN/cuDNN pick kernels on the first)."""
    device = device or pick_device("auto")
    call()
    sync(device)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        sync(device)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def gemm_peak_gmacs(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Attainable multiply-adds/s (GMAC/s) of a ``size``³ matmul in ``dtype``, best of ``repeats``.

    A measured ceiling for dense math on this machine (not the vendor's datasheet
    peak): convolutions cannot beat it, so achieved / this is the compute efficiency.
    """
    a = torch.rand(size, size, device=device, dtype=dtype)
    b = torch.rand(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)
    sync(device)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - started)
    return size**3 / best / 1e9


def macs_per_input_px(loaded: LoadedModel) -> float | None:
    """Multiply-adds per input pixel: counted from the conv layers' shapes for a 64² probe."""
    module = loaded.module
    if module is None:
        return None
    total = 0

    def hook(layer: torch.nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
        total += output.numel() // output.shape[0] * kernel

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [conv.register_forward_hook(hook) for conv in convs]
    try:
        side = 64 * max(1, loaded.spec.size_multiple)
        channels = int(loaded.spec.extra.get("input_channels", 3))
        parameter = next(module.parameters())
        with torch.inference_mode():
            module(torch.zeros(1, channels, side, side, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return total / (side * side)


def window_plan(loaded: LoadedModel, options: EngineOptions, height: int, width: int) -> dict:
    """The windows the engine runs for an ``height``×``width`` image: count and (h, w) size.

    Mirrors :meth:`raysr.engine.Upscaler._run` (pad to the size multiple, then
    :func:`raysr.engine.tiling.plan_axis` per axis); ``options.tile`` None = untiled.
    """
    multiple = max(1, loaded.spec.size_multiple)
    minimum = int(loaded.spec.extra.get("min_size", 0))
    pre = options.pre_pad
    padded_h = max(-(-(height + 2 * pre) // multiple) * multiple, minimum)
    padded_w = max(-(-(width + 2 * pre) // multiple) * multiple, minimum)
    tile = options.tile or max(padded_h, padded_w)
    spans_y = plan_axis(padded_h, tile, options.tile_pad, options.tile_overlap, multiple)
    spans_x = plan_axis(padded_w, tile, options.tile_pad, options.tile_overlap, multiple)
    window = (spans_y[0].win_end - spans_y[0].win_start, spans_x[0].win_end - spans_x[0].win_start)
    windows = len(spans_y) * len(spans_x)
    return {"windows": windows, "window": window, "rows": len(spans_y), "cols": len(spans_x),
            "window_px_over_image_px": round(windows * window[0] * window[1] / (height * width), 3)}


def bench_photo(size: int) -> np.ndarray:
    """(size, size, 3) uint8: scikit-image's astronaut, a centre crop, or resized when larger than it
    (noise without scikit-image: what is measured does not depend on content)."""
    try:
        from skimage import data
    except ImportError:  # the `demo` extra
        return (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    photo = data.astronaut()
    if size > min(photo.shape[:2]):
        import cv2

        return cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC)
    top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    return np.ascontiguousarray(photo[top: top + size, left: left + size])


def _random_inputs(loaded: LoadedModel, plan: PrecisionPlan, window: tuple[int, int], batch: int) -> torch.Tensor:
    """(batch, C, *window) uniform [0, 1) inputs in ``plan``'s dtype, device and memory format."""
    channels = int(loaded.spec.extra.get("input_channels", 3))
    inputs = torch.rand(batch, channels, *window, device=plan.device).to(plan.input_dtype)
    return inputs.contiguous(memory_format=torch.channels_last) if plan.channels_last else inputs


def bare_forward(loaded: LoadedModel, plan: PrecisionPlan, window: tuple[int, int], batch: int = 1,
                 repeats: int = 3, compile: bool = False) -> float:
    """Median seconds of one bare model call on a (batch, C, *window) input in ``plan``'s precision
    (through ``torch.compile`` when ``compile``, as the engine runs it)."""
    module = prepare_module(loaded.module, plan)
    if compile:
        module = CompiledForward(module)
    inputs = _random_inputs(loaded, plan, window, batch)

    def forward() -> None:
        with torch.inference_mode(), plan.autocast():
            module(inputs)

    return median_seconds(forward, repeats, plan.device)


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
    """Time FP32 vs auto forward and untiled vs tiled engine runs on a ``size``² input,
    beside the GEMM ceiling of this machine."""
    loaded, origin = _rrdbnet(weights_dir)
    device = pick_device("auto")
    batch = torch.rand(1, 3, size, size, device=device)
    results: dict = {
        "machine": machine_line(device),
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

        seconds = median_seconds(forward, repeats, device)
        results[f"forward_{name}_s"] = round(seconds, 3)
        results[f"forward_{name}_precision"] = plan.name
        results[f"forward_{name}_gmacs_per_s"] = round(_RRDBNET_X4_MACS_PER_PX * size * size / seconds / 1e9, 1)
    results["auto_speedup"] = round(results["forward_fp32_s"] / results["forward_auto_s"], 2)
    results.update(gemm_peaks(device))

    image = (np.random.default_rng(0).random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    untiled = Upscaler(loaded, EngineOptions(tile=size * 4))
    tiled = Upscaler(loaded, EngineOptions(tile=tile))
    results["engine_input"] = f"{size * 2}x{size * 2}"
    results["engine_untiled_s"] = round(median_seconds(lambda: untiled.upscale(image), repeats, device), 3)
    results[f"engine_tile{tile}_s"] = round(median_seconds(lambda: tiled.upscale(image), repeats, device), 3)
    results["tiling_overhead"] = round(results[f"engine_tile{tile}_s"] / results["engine_untiled_s"], 2)
    return results


def gemm_peaks(device: torch.device, size: int = 2048) -> dict:
    """GEMM ceilings in GMAC/s: fp32, and the half type this device runs fast: fp16 on CUDA, bf16 on a
    CPU with native bf16. Other CPUs get none: their bf16 matmul is an emulated path ~50× slower
    than fp32 (a 2048³ one takes ~20 s), which raysr never runs (``auto`` picks fp32 there)."""
    peaks = {"peak_source": f"measured torch.matmul {size}x{size}x{size}, best of 5 (not a datasheet figure)",
             "peak_fp32_gmacs_per_s": round(gemm_peak_gmacs(torch.float32, device, size), 1)}
    if device.type == "cuda":
        peaks["peak_fp16_gmacs_per_s"] = round(gemm_peak_gmacs(torch.float16, device, size), 1)
    elif cpu_supports_bf16():
        peaks["peak_bf16_gmacs_per_s"] = round(gemm_peak_gmacs(torch.bfloat16, device, size), 1)
    return peaks


def bench_forward(model: str = "RealESRGAN_x4plus", size: tuple[int, int] = (512, 512), batch: int = 1,
                  precision: str = "auto", repeats: int = 10, weights_dir=None, compile: bool = True,
                  compile_mode: str | None = None) -> dict:
    """Model-only throughput: the bare forward on (batch, 3, H, W) inputs in the precision
    policy, eager and (with ``compile``) through :class:`raysr.engine.precision.CompiledForward`
    in torch.compile's ``compile_mode`` (``None``: its default; e.g. ``max-autotune-no-cudagraphs``
    autotunes kernels per shape, minutes of compiling).

    This is the ceiling raysr's pipeline is measured against on a GPU (issue #11: x4plus
    on 512² and realesr-animevideov3 on 1080p inputs). ``size`` is (height, width).
    """
    loaded = load_model(model, weights_dir)
    device = pick_device("auto")
    plan = plan_precision(precision, device, loaded.supports_fp16, loaded.supports_bf16)
    module = prepare_module(loaded.module, plan)
    height, width = size
    inputs = _random_inputs(loaded, plan, size, batch)
    macs = macs_per_input_px(loaded) * height * width * batch
    results: dict = {"machine": machine_line(device), "model": loaded.spec.name, "input": f"{batch}x{width}x{height}",
                     "compile_mode": compile_mode or "default", "precision": plan.name, "channels_last": plan.channels_last,
                     "macs_per_input_px_m": round(macs / (height * width * batch) / 1e6, 2)}
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"eager": module}
    if device.type == "cuda":  # the engine runs deterministic (configure_determinism); autotuned for contrast
        variants["eager_deterministic"] = module
        variants["eager_cudnn_benchmark"] = module
    if plan.channels_last:  # what NHWC buys over NCHW
        nchw = copy.deepcopy(module).to(memory_format=torch.contiguous_format)
        variants["eager_nchw"] = lambda batch: nchw(batch.contiguous())
    if compile:
        variants["compiled"] = CompiledForward(module, mode=compile_mode)
    cudnn_flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    for name, call in variants.items():
        torch.backends.cudnn.benchmark = name == "eager_cudnn_benchmark"
        torch.backends.cudnn.deterministic = name == "eager_deterministic"

        def forward(call=call) -> None:
            with torch.inference_mode(), plan.autocast():
                call(inputs)

        started = time.perf_counter()
        forward()  # the first call compiles
        sync(device)
        results[f"{name}_first_call_s"] = round(time.perf_counter() - started, 2)
        seconds = median_seconds(forward, repeats, device)
        results[f"{name}_s"] = round(seconds, 4)
        results[f"{name}_items_per_s"] = round(batch / seconds, 2)
        results[f"{name}_gmacs_per_s"] = round(macs / seconds / 1e9, 1)
        if isinstance(call, CompiledForward) and call.failure:
            results["compile_failure"] = call.failure
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_flags
    if device.type == "cuda":
        results["cuda_max_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    peaks = gemm_peaks(device)
    results.update(peaks)
    half_peak = next((value for key, value in peaks.items() if key.startswith("peak_") and "fp32" not in key
                      and key.endswith("gmacs_per_s")), peaks["peak_fp32_gmacs_per_s"])  # no fast half type: fp32's
    best = max(results.get(f"{name}_gmacs_per_s", 0) for name in variants)
    results["best_over_half_gemm_peak"] = round(best / half_peak, 3)
    return results
