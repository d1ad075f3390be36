"""`raysr run` as the benches run it: a generated job spec, in a fresh process, with Ray's
start timed apart from the job and the run's timeline read back from its manifest.

Kept apart from :mod:`raysr.bench.pipeline` so the child process imports what `raysr run`'s
driver imports and no more (no torch, no model code): its peak RSS is the driver's.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import yaml

from raysr.bench import _child
from raysr.engine import EngineOptions
from raysr.manifest import STAGE_COLUMNS, item_rows, read_manifest

LOCAL_ACTOR_SLOT = "raysr_bench_actor"  # custom resource of a local bench cluster's worker nodes
_AFTER_READ = STAGE_COLUMNS[STAGE_COLUMNS.index("upscale_s"):]  # the stages from the model on


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
    # Before the timeline below reads the whole manifest back, which the job's driver never does.
    driver_peak_rss_mb = _child.peak_rss_bytes() / 2**20
    timeline = run_timeline(run.manifest_uri, run.run_id, job_started)
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
    code = f"from raysr.bench.job import drive_run; drive_run({str(spec_path)!r}, {cluster!r})"
    child = _child.run_child([sys.executable, "-c", code], "raysr run", timeout_s)
    process_s = time.perf_counter() - started
    if child["exit_code"]:
        raise RuntimeError(f"raysr run exited {child['exit_code']}: {child['counts']}")
    return {"process_s": process_s, "images_per_s": count / child["job_s"], "seconds": child.pop("job_s"),
            "cpus_per_actor": spec["resources"].get("cpus_per_actor"), **child}
