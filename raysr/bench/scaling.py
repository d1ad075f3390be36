"""Does raysr keep every accelerator it is given busy? `raysr run` with one model actor
against ``N`` of them, same images, same cluster.

``scaling_efficiency = rate(N actors) / (N × rate(1 actor))`` (issue #11's target: ≥ 0.9).

Where it runs:

- ``address``: a running cluster (``ray start`` / KubeRay). With GPUs there, N defaults to
  the cluster's GPU count and each actor holds one GPU; this is the figure that matters.
- otherwise a local Ray cluster on this machine (:mod:`ray.cluster_utils`, real raylets and
  object stores): a 2-CPU head for the read and write tasks and ``N`` worker nodes holding
  one model actor each (``actor_resources``), each actor given ``cores // N`` threads, and
  the single-actor run the same threads. Outputs cross from
  node to node as on a cluster, but every node shares this machine's cores and memory
  bandwidth: it measures raysr's and Ray's scheduling and transfer overhead, not hardware.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from raysr.bench._child import run_child
from raysr.bench.job import LOCAL_ACTOR_SLOT, bench_run
from raysr.bench.pipeline import write_bench_images
from raysr.engine import EngineOptions


def _cluster_shape(address: str) -> tuple[int, int]:
    """(GPUs, live nodes) of the cluster at ``address``, asked by a short-lived driver in a
    child process: this process stays free of Ray, as :func:`bench_run`'s children need."""
    code = ("import ray; from raysr.bench._child import report; "
            f"ray.init(address={address!r}, log_to_driver=False, logging_level='ERROR'); "
            "report({'gpus': int(ray.cluster_resources().get('GPU', 0)), "
            "'nodes': sum(node['Alive'] for node in ray.nodes())})")
    shape = run_child([sys.executable, "-c", code], f"joining the Ray cluster at {address!r}", timeout_s=300,
                      fix="check the address (`ray status` on the head) and retry")
    return shape["gpus"], shape["nodes"]


def bench_scaling(model: str = "RealESRGAN_x4plus", weights_dir: Path | None = None, images: int = 8,
                  size: int = 128, tile: int | None = None, precision: str = "auto", actors: int | None = None,
                  address: str | None = None) -> dict:
    """`raysr run` with 1 model actor, then with ``actors`` of them, on the same generated images.

    Args:
        actors: model actors of the second run; default: the cluster's GPUs at ``address``
            (its nodes when it has none: one CPU actor per node), else this machine's cores.
        address: a running Ray cluster; ``None`` starts a local multi-node one per run.

    Returns:
        images/s of both runs (whole job and steady state, :func:`~raysr.bench.job.run_timeline`),
        actors and nodes that did work, and the scaling efficiency of each rate.
    """
    cores = os.cpu_count() or 1
    gpus, nodes = _cluster_shape(address) if address else (0, 0)
    actors = actors or gpus or nodes or cores
    if actors < 2 or images < actors:
        raise ValueError(f"need actors >= 2 and images >= actors, got actors={actors}, images={images}")
    if address:  # one GPU per actor; without GPUs the plan gives each actor a node's cores
        per_actor: dict = {"gpus_per_actor": 1} if gpus else {"gpus_per_actor": 0}
        cluster: dict = {"address": address}
    else:
        per_actor = {"gpus_per_actor": 0, "cpus_per_actor": max(1, cores // actors),
                     "actor_resources": {LOCAL_ACTOR_SLOT: 1}}  # one actor per worker node
        cluster = {"nodes": actors, "cpus_per_node": per_actor["cpus_per_actor"]}
    options = EngineOptions(tile=tile, precision=precision)
    results: dict = {"model": model, "images": images, "input": f"{size}x{size}", "tile": tile or "auto",
                     "where": address or f"local Ray cluster: 2-CPU head + {actors} worker nodes on one machine",
                     "actors": actors, "per_actor": per_actor}
    with tempfile.TemporaryDirectory(prefix="raysr-bench-scaling-") as tmp:
        work = Path(tmp)
        folder = work / "in"
        write_bench_images(folder, images, size)
        for name, count in (("one", 1), ("many", actors)):
            run = bench_run(model, weights_dir, options, folder, work, resources={**per_actor, "actors_per_model": count},
                            cluster=cluster, name=f"scaling-{name}")
            results[f"{name}_actor{'s' if count > 1 else ''}"] = {
                key: run.get(key) for key in ("images_per_s", "steady_images_per_s", "seconds", "first_model_call_s",
                                              "ray_start_s", "actors", "nodes", "images_per_actor")}
    one, many = results["one_actor"], results["many_actors"]
    results["scaling_efficiency"] = many["images_per_s"] / (actors * one["images_per_s"])
    if one.get("steady_images_per_s") and many.get("steady_images_per_s"):
        results["steady_scaling_efficiency"] = many["steady_images_per_s"] / (actors * one["steady_images_per_s"])
    return _rounded(results)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value
