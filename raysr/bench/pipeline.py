"""Side by side on the same weights, images, tile and precision: the bare forward
(the ceiling), `raysr upscale` and `raysr run` end to end, and the official
``RealESRGANer`` loop (:mod:`raysr.bench.official`).

Pipeline efficiency = end-to-end images/s ÷ bare-forward images/s, where the bare
forward runs the engine's own windows (:func:`raysr.bench.engine.window_plan`)
in the engine's own precision plan, with no decode, tiling, blending or encode.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import yaml

from raysr.bench import _child
from raysr.bench.engine import bare_forward, gemm_peaks, machine_line, machine_load, macs_per_input_px, window_plan
from raysr.engine import EngineOptions
from raysr.engine.precision import pick_device, plan_precision
from raysr.imageops.metrics import psnr
from raysr.manifest import STAGE_COLUMNS, item_rows, read_manifest
from raysr.models.load import LoadedModel, load_model
from raysr.quick import upscale_path

LOCAL_ACTOR_SLOT = "raysr_bench_actor"  # custom resource of a local bench cluster's worker nodes
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
                 fmt="png", progress=False)
    started = time.perf_counter()
    report = upscale_path(folder, out, loaded, options, fmt="png", progress=False)
    seconds = time.perf_counter() - started
    if report.failures:
        raise RuntimeError(f"raysr upscale failed: {report.failures[:3]}")
    return {"seconds": seconds, "images_per_s": count / seconds}


def run_timeline(manifest_uri: str, run_id: str, job_started: datetime) -> dict:
    """When a run's first model call began and its outputs landed, from its manifest rows.

    ``steady_images_per_s`` counts the items done from the first model call to the last
    output: the rate a long job settles at, with the job's fixed start (listing, probe
    pass, actor start and model load) left out. Each item's model call is dated back
    from its ``finished_at`` by the seconds of its stages from the model on.
    """
    import pyarrow.compute as pc

    table = item_rows(read_manifest(manifest_uri))
    table = table.filter(pc.and_(pc.equal(table.column("run_id"), run_id),
                                 pc.is_in(table.column("status"), pa.array(["ok", "flagged"]))))
    if table.num_rows == 0:
        return {}
    rows = table.select(["finished_at", "actor_id", "node_id", *_AFTER_READ]).to_pylist()
    finished = [row["finished_at"] for row in rows]
    model_started = [row["finished_at"] - timedelta(seconds=sum(row[stage] or 0.0 for stage in _AFTER_READ))
                     for row in rows]
    first_call, last_output = min(model_started), max(finished)
    window_s = (last_output - first_call).total_seconds()
    per_actor = Counter(row["actor_id"] for row in rows)
    return {"first_model_call_s": (first_call - job_started).total_seconds(),
            "first_output_s": (min(finished) - job_started).total_seconds(),
            "steady_images_per_s": len(rows) / window_s if window_s > 0 else None,
            "actors": len(per_actor), "nodes": len({row["node_id"] for row in rows}),
            "images_per_actor": sorted(per_actor.values(), reverse=True)}


_AFTER_READ = STAGE_COLUMNS[STAGE_COLUMNS.index("upscale_s"):]  # the stages from the model on


def drive_run(spec_path: str, cluster: dict | None = None) -> None:
    """Child process of :func:`bench_run`: start or join Ray (timed apart), run the job, print JSON.

    ``cluster``: ``{"address": ...}`` joins a running cluster; ``{"nodes": n, "cpus_per_node": c}``
    starts a local one of ``n`` worker nodes beside a 2-CPU head (:mod:`ray.cluster_utils`), each
    worker node with one :data:`LOCAL_ACTOR_SLOT` for a job asking for it in ``actor_resources``;
    ``None`` starts an embedded local Ray as `raysr run` does.
    """
    from raysr.job import plan
    from raysr.job.run import run_job
    from raysr.job.spec import load_spec

    spec = load_spec(spec_path)
    cluster = cluster or {}
    started = time.perf_counter()
    address, local_cluster = cluster.get("address"), None
    if cluster.get("nodes"):
        from ray.cluster_utils import Cluster

        local_cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})  # read/write tasks
        for _ in range(cluster["nodes"]):  # one model actor each (the head takes none)
            local_cluster.add_node(num_cpus=cluster["cpus_per_node"], resources={LOCAL_ACTOR_SLOT: 1})
        local_cluster.wait_for_nodes()
        address = local_cluster.address
    plan.init_ray(address, logical_cpus=2 * (spec.resources.actors_per_model or 1) + 2)
    ray_start_s = time.perf_counter() - started
    job_started = datetime.now(timezone.utc)
    run = run_job(spec)
    timeline = run_timeline(run.manifest_uri, run.run_id, job_started)
    driver_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    _child.report({"ray_start_s": ray_start_s, "job_s": run.wall_s, "exit_code": run.exit_code,
                   "counts": dict(run.counts), "driver_peak_rss_mb": driver_peak_rss_mb, **timeline})
    if local_cluster is not None:
        import ray

        ray.shutdown()
        local_cluster.shutdown()


def bench_run(model: str, weights_dir: Path | None, options: EngineOptions, folder: Path, work: Path,
              timeout_s: float = 3600, resources: dict | None = None, cluster: dict | None = None,
              name: str = "run", force: bool = True) -> dict:
    """`raysr run` on a generated job spec over ``folder``, in a fresh process.

    By default one actor gets every CPU (``cpus_per_actor``: Ray sets a worker's thread
    count from it); ``resources`` replaces the job's ``resources`` block and ``cluster``
    says where it runs (:func:`drive_run`). Colour correction and metrics are off, so
    the job does what `raysr upscale` does; every image takes one route (one actor pool).
    Ray's start is reported apart from the job, and the manifest's timeline beside it
    (:func:`run_timeline`). ``force=False`` resumes an earlier run of the same ``name``.
    """
    count = len(list(folder.rglob("*.png")))
    spec = {
        "name": f"raysr-bench-{name}", "inputs": [str(folder)], "extensions": [".png"],
        "output": {"path": str(work / f"out-{name}"), "format": "png"}, "model": model,
        "engine": options.model_dump(exclude_defaults=True), "stages": {"metrics": False, "color": "none"},
        "route_overrides": [{"glob": "*", "route": "photo"}],  # one route: one actor pool, whatever the content
        # One actor, as the bare forward it is compared with runs one model (the job's default
        # would start one per GPU).
        "resources": resources or {"cpus_per_actor": os.cpu_count() or 1, "actors_per_model": 1},
        "weights_dir": str(weights_dir) if weights_dir else None, "force": force,
    }
    spec_path = work / f"bench-{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    started = time.perf_counter()
    code = f"from raysr.bench.pipeline import drive_run; drive_run({str(spec_path)!r}, {cluster!r})"
    child = _child.run_child([sys.executable, "-c", code], "raysr run", timeout_s)
    process_s = time.perf_counter() - started
    if child["exit_code"]:
        raise RuntimeError(f"raysr run exited {child['exit_code']}: {child['counts']}")
    return {"process_s": process_s, "images_per_s": count / child["job_s"], "seconds": child.pop("job_s"),
            "cpus_per_actor": spec["resources"].get("cpus_per_actor"), **child}


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
