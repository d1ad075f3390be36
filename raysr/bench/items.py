"""`raysr bench items`: what a job costs per item, apart from the model.

Archives hold millions of files, and a scheduled re-run finds most of them unchanged, so
the per-item cost of listing, probing, Ray Data's tasks, encoding, writing and the
manifest decides how long such jobs take. This bench runs `raysr run` over many tiny
images with a classical resizer (no model time), twice: a first run, then a resume
that finds every item unchanged. It reports both rates, the driver's peak memory and
how many Parquet parts the manifest got.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from raysr.bench.job import bench_run
from raysr.engine import EngineOptions

_PER_FOLDER = 1000  # archives nest: a thousand files a folder


def write_tiny_images(folder: str | Path, count: int, side: int = 32) -> None:
    """Write ``count`` ``side``² random RGB PNGs, a thousand per subfolder."""
    rng = np.random.default_rng(0)
    for index in range(count):
        subfolder = Path(folder) / f"d{index // _PER_FOLDER:04d}"
        if index % _PER_FOLDER == 0:
            subfolder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(subfolder / f"img{index:07d}.png"), rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def bench_items(items: int = 20_000, side: int = 32, address: str | None = None) -> dict:
    """`raysr run` of ``items`` tiny images with ``bicubic``, then its resume.

    Example:
        >>> bench_items(2000)["resume_items_per_s"]  # doctest: +SKIP
        1000.0

    Returns:
        items/s of the first run and of the resume (every item skipped), Ray's start,
        the driver's peak RSS and the manifest's part files.
    """
    if items < 1 or side < 16:
        raise ValueError(f"need items >= 1 and side >= 16, got items={items}, side={side}")
    results: dict = {"items": items, "input": f"{side}x{side}", "model": "bicubic (no model time)",
                     "cpus": os.cpu_count(), "where": address or "local Ray on this machine"}
    cluster = {"address": address} if address else None
    with tempfile.TemporaryDirectory(prefix="raysr-bench-items-") as tmp:
        work = Path(tmp)
        write_tiny_images(work / "in", items, side)
        for name in ("first_run", "resume"):
            run = bench_run("bicubic", None, EngineOptions(), work / "in", work, cluster=cluster, name="items",
                            force=False)
            results.update({f"{name}_items_per_s": round(run["images_per_s"], 1), f"{name}_s": round(run["seconds"], 1),
                            f"{name}_ray_start_s": round(run["ray_start_s"], 1),
                            f"{name}_driver_peak_rss_mb": round(run["driver_peak_rss_mb"]),
                            f"{name}_counts": run["counts"]})
        results["manifest_parts"] = len(list((work / "out-items" / "_raysr" / "manifest").rglob("part-*.parquet")))
    return results
