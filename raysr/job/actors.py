"""Model actors: how many each route's pools start with and may grow to, the CPUs and GPUs
each asks for, and whether any node can hold one. :mod:`raysr.job.plan` hands the answer to
Ray Data's actor pools; ``raysr run --dry-run`` prints it before any actor starts.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import ray
from ray.autoscaler.sdk import request_resources

from raysr.job.spec import JobSpec

_LOG = logging.getLogger(__name__)


class PlanError(ValueError):
    """The job cannot be planned: stages that do not fit together (:func:`raysr.job.plan.check_chain`),
    model actors that would leave no CPU for reading (:func:`fit_actor_cpus`), or that no node
    could hold (:func:`wait_for_actor_node`)."""


def alive_nodes() -> list[dict[str, float]]:
    """Each alive node's total resources (what it could hold empty, not what is free now)."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def cpus_per_actor(spec: JobSpec, num_gpus: float) -> float:
    """CPUs each model actor asks for: as configured; else 1 beside a GPU; else the cores of the
    smallest node (and of this machine), because Ray sets an actor's ``OMP_NUM_THREADS`` (torch's
    thread count) from the CPUs it grants."""
    if spec.resources.cpus_per_actor is not None:
        return spec.resources.cpus_per_actor
    if num_gpus > 0:
        return 1.0
    node_cpus = [node.get("CPU", 0) for node in alive_nodes()] if ray.is_initialized() else []
    smallest = min((cpus for cpus in node_cpus if cpus > 0), default=os.cpu_count() or 1)
    return float(max(1, min(os.cpu_count() or 1, int(smallest))))


def actor_pool_count(spec: JobSpec, routes: list[str]) -> int:
    """Actor pools :func:`raysr.job.plan.process` starts for ``routes``: per route, its model,
    ensemble members and face restorer (:meth:`JobSpec.chain_models`), one pool each."""
    return sum(1 + len(spec.chain_models(route)) for route in routes)


def fit_actor_cpus(spec: JobSpec, num_gpus: float, actors: int, cluster_cpus: float) -> float:
    """CPUs per model actor such that the read and write tasks keep ``read_cpus`` of the cluster.

    Ray Data starts every pool's actors when the process pass starts; actors holding every
    CPU leave no CPU for the task that reads the first input, and the job waits forever
    (e.g. ``--address`` to a one-node CPU cluster, whose cores :func:`cpus_per_actor` gives the
    one actor). A default share shrinks to fit, with a warning; a configured one that does not
    fit is refused with the numbers. On a 2-core node one actor gets 1 CPU (one torch thread).
    """
    wanted = cpus_per_actor(spec, num_gpus)
    read_cpus = spec.resources.read_cpus
    if cluster_cpus - actors * wanted >= read_cpus:
        return wanted
    fitted = math.floor((cluster_cpus - read_cpus) / actors) if actors else 0
    if spec.resources.cpus_per_actor is None and num_gpus == 0 and fitted >= 1:
        _LOG.warning("model actors get %d CPU(s) each instead of %g, so that %g of the cluster's %g CPUs stay for "
                     "reading and writing; give the cluster more CPUs (`ray start --num-cpus`) to change this",
                     fitted, wanted, read_cpus, cluster_cpus)
        return float(fitted)
    raise PlanError(
        f"the model actors ask for {actors * wanted:g} CPUs ({actors} actor(s) × {wanted:g} CPUs) of the "
        f"cluster's {cluster_cpus:g}, leaving less than resources.read_cpus "
        f"({read_cpus:g}) for reading and writing, so no input would ever be read; lower resources.cpus_per_actor "
        f"or resources.actors_per_model, or add CPUs to the cluster")


@dataclass(frozen=True)
class ActorLayout:
    """Model actors per route at the start (each of the route's pools gets that many), how many
    each pool may grow to while the job runs, and the GPUs each actor asks for."""

    actors: dict[str, int]
    gpus_per_actor: float
    total: int
    max_actors: dict[str, int]

    def describe(self) -> str:
        """``photo 2 per pool (up to 40 as the cluster grows), anime 1 per pool`` for the run's log."""
        return ", ".join(f"{route} {count} per pool" + (
            f" (up to {self.max_actors[route]} as the cluster grows)" if self.max_actors[route] > count else "")
            for route, count in self.actors.items())


def actor_layout(spec: JobSpec, route_items: dict[str, int], resources: dict[str, float]) -> ActorLayout:
    """How many model actors each route gets, from the cluster's ``resources`` (Ray's totals).

    ``resources.actors_per_model`` set: that many in every pool. Unset (the default): on a GPU
    cluster, one actor per GPU (``gpus_per_actor`` each), as many as the CPUs (each actor's
    ``cpus_per_actor`` beside ``read_cpus``) and ``actor_resources`` allow;
    on CPU clusters, as many as ``actor_resources`` allow, else one per pool (a CPU actor takes
    a node's cores). The actors go to the routes by their pending items, every pool at least one
    and no route more actors than it has items.

    A GPU pool may grow while the job runs: Ray Data adds an actor when the pool is busy and a
    GPU is free, which happens when an autoscaling cluster adds a GPU node after the start. It
    grows up to ``resources.max_actors_per_model`` (which caps the start too); unset, up to the
    route's pending items when the count is automatic, and not at all when ``actors_per_model``
    is set. CPU pools keep their size unless ``max_actors_per_model`` says otherwise (a CPU
    actor holds a node's cores).

    Example:
        8 GPUs, photo 1000 items, anime 10 items, no ensembles: photo 7 actors (up to 1000 as the
        cluster grows), anime 1 (up to 10).
    """
    routes = {route: items for route, items in route_items.items() if items}
    pools = {route: actor_pool_count(spec, [route]) for route in routes}
    gpus = spec.resources.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
    configured = spec.resources.actors_per_model
    if configured is not None:
        actors = dict.fromkeys(routes, configured)
    else:
        slot_limits = [math.floor(resources.get(name, 0) / amount + 1e-9)
                       for name, amount in spec.resources.actor_resources.items()]
        if gpus > 0:  # every GPU, as far as the CPUs go (each actor holds some beside its GPU)
            slot_limits.append(math.floor(resources.get("GPU", 0) / gpus + 1e-9))
            free_cpus = resources.get("CPU", 0) - spec.resources.read_cpus
            slot_limits.append(math.floor(free_cpus / cpus_per_actor(spec, gpus) + 1e-9))
        actors = _share_slots(min(slot_limits, default=0), pools, routes)
    ceiling = spec.resources.max_actors_per_model
    if ceiling is not None:  # a cap on the automatic start too (a cluster shared with other jobs)
        actors = {route: min(count, ceiling) for route, count in actors.items()}
        max_actors = {route: max(count, min(ceiling, routes[route])) for route, count in actors.items()}
    elif configured is None and gpus > 0:
        max_actors = {route: max(count, routes[route]) for route, count in actors.items()}
    else:
        max_actors = dict(actors)
    return ActorLayout(actors, gpus, sum(count * pools[route] for route, count in actors.items()), max_actors)


def plan_actors(spec: JobSpec, route_items: dict[str, int]) -> tuple[ActorLayout, float]:
    """What :func:`raysr.job.plan.process` starts for ``route_items`` on this cluster: the layout
    and the CPUs each actor gets (:func:`fit_actor_cpus`, which refuses actors that leave no CPU
    for reading). ``raysr run --dry-run`` shows it before any actor starts."""
    cluster = ray.cluster_resources()
    layout = actor_layout(spec, route_items, cluster)
    return layout, fit_actor_cpus(spec, layout.gpus_per_actor, layout.total, float(cluster.get("CPU", 0)))


def actors_line(layout: ActorLayout, cpus_per_actor: float) -> str:
    """``photo 7 per pool (up to 1000 as the cluster grows); 1 GPU(s) and 1 CPU(s) each``."""
    return f"{layout.describe()}; {layout.gpus_per_actor:g} GPU(s) and {cpus_per_actor:g} CPU(s) each"


def _share_slots(slots: int, pools: dict[str, int], items: dict[str, int]) -> dict[str, int]:
    """One actor per pool, then each free slot to the route with the most items per actor
    (a route's extra actor takes one slot per pool of the route)."""
    actors = dict.fromkeys(items, 1)
    free = slots - sum(pools.values())
    while True:
        candidates = [route for route in items if pools[route] <= free and actors[route] < items[route]]
        if not candidates:
            return actors
        route = max(candidates, key=lambda name: items[name] / actors[name])
        actors[route] += 1
        free -= pools[route]


def actor_bundle(spec: JobSpec, layout: ActorLayout, cpus: float) -> dict[str, float]:
    """What one model actor asks Ray for: its CPUs, its GPUs and the job's ``actor_resources``."""
    bundle = {"CPU": cpus}
    if layout.gpus_per_actor > 0:
        bundle["GPU"] = layout.gpus_per_actor
    return {**bundle, **spec.resources.actor_resources}


def _shape(resources: dict[str, float], names: list[str]) -> str:
    return ", ".join(f"{resources.get(name, 0):g} {name}" for name in names)


def unplaceable(bundle: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """Why no node of the cluster could hold one model actor, or ``None`` when one could.

    Counted on the nodes' totals: an actor ``fit_actor_cpus`` lets through on the cluster's sum
    can still be larger than every node (``cpus_per_actor: 8`` on 4-CPU nodes, 2 GPUs per actor
    on 1-GPU nodes), and Ray would keep it pending for as long as the job runs.
    """
    if any(all(node.get(name, 0) >= amount - 1e-9 for name, amount in bundle.items()) for node in nodes):
        return None
    names = list(bundle)
    shapes = sorted({_shape(node, names) for node in nodes})
    return (f"no node of the cluster can hold a model actor ({_shape(bundle, names)}): "
            f"its nodes have {'; '.join(shapes[:4]) or 'nothing'}{' …' if len(shapes) > 4 else ''}")


def wait_for_actor_node(bundle: dict[str, float], wait_s: float) -> None:
    """Return once some node could hold a model actor; raise :class:`PlanError` after ``wait_s``
    (at once when it is 0: a Ray that raysr started on this machine never grows).

    On an autoscaling cluster the node may come: while it waits, the actor's shape is asked of
    the autoscaler (``request_resources``; an actor Ray Data has not created yet is no demand),
    and the request is withdrawn when the wait ends, either way. A fixed cluster never grows,
    so the job fails with the numbers instead of waiting for ever with no item done.
    """
    # Not a placeholder task of the actor's shape: cancelling one that is being pushed to the
    # node that just joined trips a check in Ray 2.60's driver ("Tried to complete task that
    # was not pending") and kills the driver.
    why = unplaceable(bundle, alive_nodes())
    if why is None:
        return
    fix = "lower resources.cpus_per_actor, gpus_per_actor or actor_resources to fit a node"
    if wait_s <= 0:
        raise PlanError(f"{why}; {fix}")
    _LOG.warning("%s; waiting up to %g s for one to join (resources.wait_for_node_s)", why, wait_s)
    deadline = time.monotonic() + wait_s
    request_resources(bundles=[dict(bundle)])
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if unplaceable(bundle, alive_nodes()) is None:
                _LOG.info("a node that can hold a model actor has joined")
                return
        raise PlanError(f"{why}, and none joined in {wait_s:g} s; {fix}, or add a node that fits")
    finally:
        request_resources(bundles=[])
