"""The official Real-ESRGAN loop, timed: run by `raysr bench` with the peer venv's Python.

This file never imports raysr: it runs in the benchmark's own virtual environment
(realesrgan 0.3.0 + basicsr 1.4.2, see :mod:`raysr.bench.official`) and does what
``inference_realesrgan.py`` of xinntao/Real-ESRGAN v0.3.0 does per image
(https://github.com/xinntao/Real-ESRGAN/blob/v0.3.0/inference_realesrgan.py, BSD-3-Clause):
``cv2.imread(path, IMREAD_UNCHANGED)`` → ``RealESRGANer.enhance(img, outscale)`` →
``cv2.imwrite``. It prints one line ``RAYSR_BENCH_JSON {...}`` with per-image
seconds (read + enhance + write, and enhance alone) and peak memory.

Usage: python _official_runner.py --weights W.pth --arch '{"arch": "ESRGAN", ...}' \
    --tile 128 [--half] [--out-dir D] [--warmup] IMAGE [IMAGE ...]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time


def _shim_functional_tensor() -> None:
    """basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17."""
    import torchvision.transforms.functional as functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)


def _build_model(arch: dict):
    if arch["arch"] == "ESRGAN":
        from basicsr.archs.rrdbnet_arch import RRDBNet

        return RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=arch["num_feat"], num_block=arch["num_block"],
                       num_grow_ch=arch["num_grow_ch"], scale=arch["scale"])
    if arch["arch"] == "Compact":
        from realesrgan.archs.srvgg_arch import SRVGGNetCompact

        return SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=arch["num_feat"], num_conv=arch["num_conv"],
                               upscale=arch["scale"], act_type="prelu")
    raise SystemExit(f"the official loop runs ESRGAN (RRDBNet) and Compact models, not {arch['arch']!r}")


def _peak_rss_bytes() -> int:
    """Peak RSS since this program started (``VmHWM``; ``ru_maxrss`` would include the
    parent's, which Linux keeps across ``execve``). A copy of raysr.bench._child's: no raysr here."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--weights", required=True, help="a .pth with params_ema or params (official layout)")
    parser.add_argument("--arch", required=True, help="JSON: arch, scale and the constructor's sizes")
    parser.add_argument("--tile", type=int, default=0)
    parser.add_argument("--tile-pad", type=int, default=10)
    parser.add_argument("--pre-pad", type=int, default=0)
    parser.add_argument("--half", action="store_true", help="fp16 (CUDA only, as the official script)")
    parser.add_argument("--out-dir", help="write outputs here as PNG (for the PSNR cross-check)")
    parser.add_argument("--warmup", action="store_true", help="run the first image once untimed")
    args = parser.parse_args(argv)

    _shim_functional_tensor()
    import cv2
    import torch
    from realesrgan import RealESRGANer

    arch = json.loads(args.arch)
    started = time.perf_counter()
    upsampler = RealESRGANer(scale=arch["scale"], model_path=args.weights, model=_build_model(arch),
                             tile=args.tile, tile_pad=args.tile_pad, pre_pad=args.pre_pad, half=args.half)
    load_s = time.perf_counter() - started
    cuda = torch.cuda.is_available()
    if args.warmup:
        upsampler.enhance(cv2.imread(args.images[0], cv2.IMREAD_UNCHANGED), outscale=arch["scale"])
    baseline_rss = _current_rss_bytes()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    # Per image, what the official script's loop does: read, enhance, write. `seconds` is the
    # whole loop (what `raysr upscale` is timed against), `enhance_seconds` the call alone.
    seconds, enhance_seconds = [], []
    for path in args.images:
        started = time.perf_counter()
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        enhance_started = time.perf_counter()
        output, _mode = upsampler.enhance(image, outscale=arch["scale"])
        if cuda:
            torch.cuda.synchronize()
        enhance_seconds.append(time.perf_counter() - enhance_started)
        if args.out_dir:
            cv2.imwrite(os.path.join(args.out_dir, os.path.splitext(os.path.basename(path))[0] + ".png"), output)
        seconds.append(time.perf_counter() - started)
    report = {
        "seconds": seconds,
        "enhance_seconds": enhance_seconds,
        "load_s": load_s,
        "peak_rss_bytes": _peak_rss_bytes(),
        "baseline_rss_bytes": baseline_rss,
        "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "device": str(upsampler.device),
        "half": bool(upsampler.half),
        "torch_threads": torch.get_num_threads(),
        "versions": {name: importlib.metadata.version(name) for name in ("realesrgan", "basicsr", "torch", "torchvision")},
    }
    print("RAYSR_BENCH_JSON " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
