"""Side by side on the same weights, images, tile and precision: the bare forward
(the ceiling), `raysr upscale` and `raysr run` end to end, and the official
``RealESRGANer`` loop (:mod:`raysr.bench.official`).

Pipeline efficiency = end-to-end images/s ÷ bare-forward images/s, where the bare
forward runs the engine's own windows (:func:`raysr.bench.engine.window_plan`)
in the engine's own precision plan, with no decode, tiling, blending or encode.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from raysr.bench.engine import bare_forward, gemm_peaks, machine_line, machine_load, macs_per_input_px, window_plan
from raysr.bench.job import bench_run
from raysr.engine import EngineOptions
from raysr.engine.precision import pick_device, plan_precision
from raysr.imageops.metrics import psnr
from raysr.models.load import LoadedModel, load_model
from raysr.quick import upscale_path

_OFFICIAL_TILE_PAD = 10  # RealESRGANer's default tile_pad; it pastes tile centres, no cross-fade
_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def write_bench_images(folder: str | Path, count: int, size: int) -> list[Path]:
    """Write ``count`` ``size``² RGB PNGs: centre crops of scikit-image's photos (noise if it is missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from skimage import data
        photos = [getattr(data, name)() for name in _SAMPLES]
    except ImportError:  # the `demo` extra: speed does not depend on content
        photos = [(np.random.default_rng(i).random((size, size, 3)) * 255).astype(np.uint8) for i in range(count)]
    paths = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = min(photo.shape[:2])
        shift = (index // len(photos)) * side // 8  # repeats take another crop
        top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
        crop = photo[top:top + side, left + shift:left + side] if shift else photo[top:top + side, left:left + side]
        pixels = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
        path = folder / f"img{index:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def bare_seconds_per_image(loaded: LoadedModel, options: EngineOptions, size: int, repeats: int = 3) -> dict:
    """Seconds of the bare model calls the engine makes for one ``size``² image (the ceiling)."""
    device = pick_device(options.device)
    plan = plan_precision(options.precision, device, loaded.supports_fp16, loaded.supports_bf16)
    windows = window_plan(loaded, options, size, size)
    # Tiles per call: the engine's default (Upscaler._tile_batch: 4 on CUDA, 1 on CPU) unless set,
    # at most one tile row (the engine batches the windows of one row).
    batch = min(options.tile_batch or (4 if device.type == "cuda" else 1), windows["cols"])
    calls = windows["rows"] * -(-windows["cols"] // batch)
    per_call = bare_forward(loaded, plan, windows["window"], batch, repeats, options.compile)
    return {"precision": plan.name, "tile_batch": batch, **windows, "seconds": calls * per_call}


def bench_upscale(loaded: LoadedModel, options: EngineOptions, folder: Path, out: Path) -> dict:
    """`raysr upscale FOLDER OUT` in process (model already loaded): wall seconds and images/s.

    The first image is upscaled once untimed before (kernel selection, compilation), as the
    official runner's ``--warmup`` does for its side.
    """
    images = sorted(folder.glob("*.png"))
    count = len(images)
    upscale_path(images[0], out.with_name(out.name + "-warmup") / images[0].name, loaded, options,
                 fmt="png", progress=False, force=True)
    started = time.perf_counter()
    report = upscale_path(folder, out, loaded, options, fmt="png", progress=False, force=True)  # time every image
    seconds = time.perf_counter() - started
    if report.failures:
        raise RuntimeError(f"raysr upscale failed: {report.failures[:3]}")
    return {"seconds": seconds, "images_per_s": count / seconds}


def _official_side(loaded: LoadedModel, options: EngineOptions, images: list[Path], work: Path,
                   raysr_out: Path, bench_dir: Path | None) -> dict:
    """The official loop on the same images and tile, and two PSNR cross-checks against raysr."""
    from raysr.bench.official import official_python, run_official

    python = official_python(bench_dir)
    out = work / "out-official"
    out.mkdir()
    report = run_official(python, loaded, images, options.tile or 0, work, out_dir=out)
    tiled_psnr = [psnr(_read_rgb(out / path.name), _read_rgb(raysr_out / path.name)) for path in images]
    # Same weights, both FP32 and untiled on a 96² crop: differences are the engine's alone.
    check_dir = work / "check"
    check_dir.mkdir()
    crop = _read_rgb(images[0])[:96, :96]
    cv2.imwrite(str(check_dir / "crop.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    fp32_out = work / "check-official"
    fp32_out.mkdir()
    import torch

    if torch.cuda.is_available():
        fp32 = None  # the official script runs fp16 on CUDA; the FP32 check is a CPU figure
    else:
        run_official(python, loaded, [check_dir / "crop.png"], 0, work, out_dir=fp32_out, warmup=False)
        from raysr.engine import Upscaler

        ours = Upscaler(loaded, options.model_copy(update={"tile": 96, "precision": "fp32"})).upscale(crop).image
        fp32 = psnr(_read_rgb(fp32_out / "crop.png"), ours)
    return {"report": report, "tiled_psnr_db": min(tiled_psnr), "fp32_untiled_psnr_db": fp32}


def bench_pipeline(model: str = "RealESRGAN_x4plus", weights_dir: Path | None = None, images: int = 4,
                   size: int = 256, tile: int | None = 128, precision: str = "auto", with_run: bool = True,
                   with_official: bool = False, bench_dir: Path | None = None, repeats: int = 3,
                   compile: bool = False) -> dict:
    """Bare forward, `raysr upscale`, `raysr run` and (optionally) the official loop, side by side.

    Returns:
        a flat dict: images/s of each path, efficiency (end to end ÷ bare), raysr ÷
        official, achieved GMAC/s beside the measured GEMM peak, PSNR cross-checks.
    """
    if images < 1 or size < 16:
        raise ValueError(f"need images >= 1 and size >= 16, got images={images}, size={size}")
    loaded = load_model(model, weights_dir)
    options = EngineOptions(tile=tile, precision=precision, compile=compile)
    device = pick_device(options.device)
    results: dict = {"machine": machine_line(device), "model": loaded.spec.name, "images": images,
                     "input": f"{size}x{size}", "tile": tile or "untiled", "compile": compile,
                     "machine_load_before": machine_load()}
    with tempfile.TemporaryDirectory(prefix="raysr-bench-") as tmp:
        work = Path(tmp)
        paths = write_bench_images(work / "in", images, size)
        # 1. the ceiling: the engine's windows, its precision, nothing else
        bare = bare_seconds_per_image(loaded, options, size, repeats)
        results.update(precision=bare["precision"], windows_per_image=bare["windows"],
                       window=f"{bare['window'][1]}x{bare['window'][0]}",
                       window_px_over_image_px=bare["window_px_over_image_px"],
                       bare_images_per_s=1 / bare["seconds"])
        # 2. `raysr upscale`, warmed up like the official side
        upscale = bench_upscale(loaded, options, work / "in", work / "out-upscale")
        results.update(upscale_images_per_s=upscale["images_per_s"],
                       upscale_efficiency=upscale["images_per_s"] / results["bare_images_per_s"])
        if tile is not None:  # 2b. what a user gets without --tile: the engine's auto tile
            auto = bench_upscale(loaded, options.model_copy(update={"tile": None}), work / "in", work / "out-auto")
            results["upscale_auto_tile_images_per_s"] = auto["images_per_s"]
            # 2c. the official loop's seams (10 px context, no cross-fade): what raysr's seams cost
            official_seams = options.model_copy(update={"tile_pad": _OFFICIAL_TILE_PAD, "tile_overlap": 0})
            seams = bench_upscale(loaded, official_seams, work / "in", work / "out-official-seams")
            results.update(upscale_official_seams_images_per_s=seams["images_per_s"],
                           official_seams_window_px_over_image_px=window_plan(loaded, official_seams, size, size)[
                               "window_px_over_image_px"])
        # 3. `raysr run`: a fresh process with Ray
        if with_run:
            run = bench_run(model, weights_dir, options, work / "in", work)
            results.update(run_images_per_s=run["images_per_s"],
                           run_efficiency=run["images_per_s"] / results["bare_images_per_s"],
                           run_steady_images_per_s=run.get("steady_images_per_s"),
                           run_steady_efficiency=(run.get("steady_images_per_s") or 0) / results["bare_images_per_s"],
                           run_first_model_call_s=run.get("first_model_call_s"),
                           run_ray_start_s=run["ray_start_s"], run_process_s=run["process_s"],
                           run_cpus_per_actor=run["cpus_per_actor"])
        # 4. the official loop, same images, weights and tile
        if with_official:
            official = _official_side(loaded, options, paths, work, work / "out-upscale", bench_dir)
            seconds = official["report"]["seconds"]  # read + enhance + write, as `raysr upscale` is timed
            enhance = official["report"]["enhance_seconds"]
            results.update(official_images_per_s=len(seconds) / sum(seconds),
                           official_enhance_only_images_per_s=len(enhance) / sum(enhance),
                           official_precision="fp16" if official["report"]["half"] else "fp32",
                           official_tile_pad=_OFFICIAL_TILE_PAD,
                           raysr_over_official=upscale["images_per_s"] * sum(seconds) / len(seconds),
                           raysr_auto_tile_over_official=results.get("upscale_auto_tile_images_per_s", 0)
                           * sum(seconds) / len(seconds),
                           raysr_official_seams_over_official=results.get("upscale_official_seams_images_per_s", 0)
                           * sum(seconds) / len(seconds),
                           psnr_official_vs_raysr_tiled_db=official["tiled_psnr_db"],
                           psnr_official_vs_raysr_fp32_untiled_db=official["fp32_untiled_psnr_db"])
    # 5. the FLOP rate: useful multiply-adds (image pixels) and computed ones (window pixels)
    macs = macs_per_input_px(loaded)
    if macs:
        image_macs = macs * size * size
        results["macs_per_input_px"] = round(macs / 1e6, 2)
        results["bare_gmacs_per_s"] = image_macs * results["window_px_over_image_px"] * results["bare_images_per_s"] / 1e9
        for key in ("upscale", "upscale_auto_tile", "upscale_official_seams", "run", "official"):
            if f"{key}_images_per_s" in results:
                results[f"{key}_useful_gmacs_per_s"] = image_macs * results[f"{key}_images_per_s"] / 1e9
    results.update(gemm_peaks(device))
    results["machine_load_after"] = machine_load()
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in results.items()}
