"""The Ray Data plan: the only module that imports ``ray.data``.

Two passes over the inputs:

1. **probe** (CPU tasks): read, hash, validate, route and decide skip/process.
   Its rows are small and come back to the driver, which writes the error and
   skip rows and splits the rest by route.
2. **process**: per route, re-read bytes (CPU) → upscale in that route's own
   actor pool (one model per actor, ``num_gpus`` per actor on GPU clusters) →
   union of the routes → colour → metrics → encode + write (CPU tasks, fused).
   Only small manifest rows come back to the driver.

Images travel as encoded bytes until the actor decodes them, and outputs as raw
bytes plus shape columns, so batches of different sizes never form ragged
tensors; Ray Data's backpressure bounds how many are in flight.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from raysr.job import transport
from raysr.job.actors import PlanError, actor_bundle, actors_line, plan_actors, wait_for_actor_node
from raysr.job.crashes import guard, start_ledger
from raysr.job.priority import model_actors_first
from raysr.job.spec import JobSpec
from raysr.sources.s3 import WORKER_ENV
from raysr.stages.color import ColorStage
from raysr.stages.ensemble import BlendStage, EnsembleMemberStage
from raysr.stages.metrics import MetricsStage
from raysr.stages.read import ProbeStage, ReadBytesStage, attach_last_outcomes
from raysr.stages.upscale import UpscaleStage
from raysr.stages.write import WriteStage

_LOG = logging.getLogger(__name__)
LISTING_COLUMNS = ("item_id", "input_uri", "relative", "listed_size", "input_version")
_PROBE_ROWS_PER_BLOCK = (8, 500)  # at least (a task's start-up), at most (load balance at the tail)
_PROCESS_ROWS_PER_BLOCK = 64  # at most: a block's encoded inputs travel to one actor together


def check_chain(stages: list, initial: tuple[str, ...]) -> None:
    """Every column a stage reads must exist by then; fail before asking for a cluster."""
    available = set(initial)
    for stage in stages:
        missing = [column for column in stage.reads if column not in available]
        if missing:
            name = getattr(stage, "__name__", type(stage).__name__)
            raise PlanError(f"{name} reads {missing}, which no earlier stage writes")
        available |= set(stage.writes)


_embedded_cores: int | None = None  # this machine's cores, while raysr runs the Ray it started itself


def init_ray(address: str | None, logical_cpus: int | None = None) -> None:
    """Join ``address``, or start an embedded local Ray (no cluster needed)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver prints one progress line of its own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... so Ray Data's warning that its bars are off says nothing a user needs.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    if not ray.is_initialized():
        with _sigterm_kept():
            _connect(address, logical_cpus)
    transport.install()  # the driver's tables (the pending items) travel as Arrow IPC too
    start_ledger()  # items that kill their worker (raysr.job.crashes)


@contextlib.contextmanager
def _sigterm_kept():
    """After ``ray.init``, SIGTERM still unwinds the driver, and nothing aborts it 3 s later.

    ``ray.init`` replaces the Python SIGTERM handler (with ``sys.exit(15)``) and, under it, its core
    worker wraps that in abseil's failure handler, which prints a stack trace and arms ``alarm(3)``
    that is never disarmed: a driver still recording its last manifest rows or releasing its lease
    3 s after a scheduler's SIGTERM was killed by SIGABRT (exit 134), leaving its lease behind.
    Reinstalling a Python handler drops abseil's wrapper; the one reinstalled is the caller's own
    (``raysr run``'s: exit 143) if it had one, else Ray's.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        handler = before if callable(before) else signal.getsignal(signal.SIGTERM)
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)


def _connect(address: str | None, logical_cpus: int | None) -> None:
    global _embedded_cores
    if address:
        _embedded_cores = None
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        _embedded_cores = os.cpu_count() or 1
        # Logical CPUs: actors and read/write tasks must fit side by side even on a
        # 2-core laptop; the OS shares the real cores.
        # address="local": always our own Ray, never some other Ray already on this machine.
        # Idle workers are kept a minute, not Ray's 1 s: the probe pass's workers would otherwise
        # be killed while the model actor loads, and the write tasks would start new ones, each
        # importing Ray Data and pandas again (~3 s of a core apiece; 31 → 23 worker processes
        # and 24 → 19 s for `bench items --images 1500`).
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, logical_cpus or 0), include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING,
                 _system_config={"idle_worker_killing_time_threshold_ms": 60_000})


def _task_pool(blocks: int) -> ray.data.TaskPoolStrategy | None:
    """How many read/probe/post tasks may run at once over ``blocks`` input blocks: Ray Data's
    default (as many as the CPUs allow) on a cluster; on the Ray that ``raysr run`` starts on
    this machine, two per core, and no more than there are blocks (Ray Data warns about a pool
    larger than its inputs, a line the user can do nothing about).

    That Ray declares more logical CPUs than the machine has (so the model actors fit beside the
    tasks), and with ``read_cpus`` 0.5 Ray Data would run four tasks per core: each in a worker
    process of its own, and each worker spends ~3 s of a core importing Ray Data and pandas
    before its first task. On a 2-core laptop that was more CPU than a short job's own work
    (24 images: 19 → 11 Ray processes, 18.5 → 13.3 s). Two per core, not one, so a task's file
    I/O and fsync overlap another's work (20 000 tiny items: one per core 178–180 items/s, two
    215, uncapped 201–210).
    """
    cap = _task_cap()
    return ray.data.TaskPoolStrategy(size=max(1, min(cap, blocks))) if cap else None


def _task_cap() -> int | None:
    """Tasks a pool may run at once on the Ray ``raysr run`` started (:func:`_task_pool`); None on a cluster."""
    return 2 * _embedded_cores if _embedded_cores else None


def _worker_env() -> dict | None:
    """A Ray ``runtime_env`` carrying the driver's object-store settings to the workers.

    Workers of a cluster started apart from the driver (``ray start``, a cluster
    launcher, tests) do not inherit the driver's environment, so an endpoint
    override or region set where ``raysr run`` runs would not reach them. Only the
    names in :data:`raysr.sources.s3.WORKER_ENV` travel: endpoint, region,
    addressing style, and which profile and files hold credentials, never the
    credentials themselves (a runtime_env is visible in the Ray dashboard); each
    worker resolves its own credentials from its standard chain. Ray merges these
    variables into the job's own runtime_env.
    """
    env_vars = {name: os.environ[name] for name in WORKER_ENV if os.environ.get(name)}
    return {"env_vars": env_vars} if env_vars else None


def _blocks(table: pa.Table, min_rows: int) -> list[pa.Table]:
    """Blocks of ``min_rows`` rows (:func:`probe_rows_per_block`, :func:`process_rows_per_block`),
    larger once there would be more than ~2000 of them: past that the count of blocks, not
    their size, weighs on the driver."""
    rows_per_block = max(min_rows, math.ceil(table.num_rows / 2000))
    if "segment_index" in table.column_names:
        # A video segment is minutes of model time: one block each, so one film's
        # segments spread over every actor instead of queueing behind one.
        is_segment = pc.is_valid(table.column("segment_index"))
        segments = table.filter(is_segment)
        images = table.filter(pc.invert(is_segment))
        return [segments.slice(index, 1) for index in range(segments.num_rows)] + [
            images.slice(start, rows_per_block) for start in range(0, images.num_rows, rows_per_block)]
    return [table.slice(start, rows_per_block) for start in range(0, max(table.num_rows, 1), rows_per_block)]


def probe_rows_per_block(items: int, task_slots: float) -> int:
    """Rows per probe task: about four blocks per task slot of the cluster, within
    :data:`_PROBE_ROWS_PER_BLOCK`.

    Probing an unchanged item is a stat and a few comparisons, far less than starting a
    Ray task, so small blocks made scheduled re-runs slow (20 000 skipped items on 2 cores:
    37 s at 10 rows a block, 4.7 s at 200); four rounds of blocks still keep every slot busy
    to the end of a first run, where each item is read, hashed and decoded.
    """
    low, high = _PROBE_ROWS_PER_BLOCK
    return max(low, min(high, math.ceil(items / max(1.0, 4 * task_slots))))


def process_rows_per_block(items: int, actors: int, batch_size: int) -> int:
    """Rows per block of the process pass: one until each model actor would get more than 64
    blocks, then as many as keep it at 64, within ``batch_size`` (one model batch) and
    :data:`_PROCESS_ROWS_PER_BLOCK`.

    Every block costs a read task, an actor call and a write task (~70 ms on 2 cores), which
    one-row blocks paid per item (3000 tiny images: 29 items/s at 2 rows a block, 75 at 64).
    But an actor emits a block's outputs together, at its end, and hands out whole blocks:
    while blocks are few, one row each keeps outputs streaming and the actors finishing together.
    """
    return max(batch_size, min(_PROCESS_ROWS_PER_BLOCK, math.ceil(items / (64 * max(1, actors)))))


def probe(listing: pa.Table, spec: JobSpec, weights_sha256: dict[str, str | None], chain_digests: dict[str, str | None],
          done: pa.Table | None) -> Iterator[pa.Table]:
    """Run the probe pass over the listing; yield its rows as Arrow batches.

    ``done``: the last recorded outcome per item (:func:`raysr.manifest.latest_outcomes`),
    joined onto the listed rows here so each probe task gets only its block's history.
    """
    stage = ProbeStage(spec, weights_sha256, chain_digests)
    check_chain([stage], LISTING_COLUMNS)
    task_slots = min(float(ray.cluster_resources().get("CPU", 1)) / spec.resources.read_cpus,
                     _task_cap() or math.inf)
    blocks = _blocks(attach_last_outcomes(listing, done), probe_rows_per_block(listing.num_rows, task_slots))
    tasks = _task_pool(len(blocks))
    dataset = ray.data.from_arrow(blocks).map_batches(
        guard(stage), batch_size=None, num_cpus=spec.resources.read_cpus, batch_format="pyarrow", compute=tasks,
        runtime_env=_worker_env(),
    )
    yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


def _face_stages(spec: JobSpec, route: str) -> list:
    if spec.route_spec(route).face_model is None:
        return []
    from raysr.stages.faces import FaceStage

    return [FaceStage]


def _in_actor_pool(dataset: ray.data.Dataset, stage_class: type, constructor_kwargs: dict, spec: JobSpec,
                   actors: tuple[int, int], num_gpus: float, num_cpus: float) -> ray.data.Dataset:
    """One model per actor: ``stage_class`` is constructed once per actor and fed batches.

    ``actors``: the pool's size at the start and the most it may grow to (:mod:`raysr.job.actors`).

    Ray Data's actor pools restart a killed actor (OOM kill, segfault) and retry its
    batch (max_restarts=-1, max_task_retries=-1 by default). A stage with
    ``concurrent_calls`` > 1 takes that many calls at once, in threads; it runs its model
    on one thread of its own (:class:`~raysr.stages.upscale.UpscaleStage`).
    """
    resources = spec.resources
    concurrent_calls = getattr(stage_class, "concurrent_calls", 1)
    return dataset.map_batches(
        guard(stage_class),
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=resources.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1],
                                           max_concurrent_calls_per_actor=concurrent_calls,
                                           enable_true_multi_threading=concurrent_calls > 1),
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        resources=dict(resources.actor_resources) or None,
        runtime_env=_worker_env(),
    )


def process(pending_by_route: dict[str, pa.Table], spec: JobSpec) -> Iterator[pa.Table]:
    """Run the process pass; yield finished manifest rows as Arrow batches."""
    if not any(table.num_rows for table in pending_by_route.values()):
        return  # a resume with nothing left to do starts no actor (and says nothing about actors)
    resources = spec.resources
    layout, num_cpus = plan_actors(spec, {route: table.num_rows for route, table in pending_by_route.items()})
    num_gpus = layout.gpus_per_actor
    worker_env = _worker_env()
    post = [
        ColorStage({route: spec.route_spec(route).color or spec.stages.color for route in pending_by_route}),
        MetricsStage(spec.stages.flag_lr_psnr_below, spec.stages.flag_delta_e_above, spec.stages.reference_dir)
        if spec.stages.metrics else None,
        WriteStage(spec.output.format, spec.output.quality),
    ]
    post = [stage for stage in post if stage is not None]
    _LOG.info("model actors: %s", actors_line(layout, num_cpus))
    # The Ray raysr started on this machine has no autoscaler: nothing would join it.
    wait_for_actor_node(actor_bundle(spec, layout, num_cpus), 0 if _embedded_cores else resources.wait_for_node_s)
    branches, total_blocks = [], 0
    # How the processes that hold a model are titled (a name no process of this job carries costs nothing).
    model_stages = {UpscaleStage.__name__, EnsembleMemberStage.__name__}
    for route, table in pending_by_route.items():
        if table.num_rows == 0:
            continue
        chain = spec.route_spec(route)
        face_stages = _face_stages(spec, route)
        ensemble_stages = [EnsembleMemberStage, BlendStage] if chain.ensemble else []
        model_stages.update(stage.__name__ for stage in face_stages)
        check_chain([ReadBytesStage(), UpscaleStage, *ensemble_stages, *face_stages, *post],
                    (*table.column_names, *ReadBytesStage.writes, *UpscaleStage.writes))
        actors = layout.actors[route], layout.max_actors[route]
        rows_per_block = process_rows_per_block(table.num_rows, actors[0], resources.batch_size)
        blocks = _blocks(table, rows_per_block)
        total_blocks += len(blocks)
        tasks = _task_pool(len(blocks))
        branch = ray.data.from_arrow(blocks).map_batches(
            guard(ReadBytesStage()), batch_size=None, num_cpus=resources.read_cpus, batch_format="pyarrow",
            compute=tasks, runtime_env=worker_env,
        )
        branch = _in_actor_pool(branch, UpscaleStage, {
            "model": chain.model,
            "engine": spec.engine,
            "weights_dir": spec.weights_dir,
            "timeout_s": spec.limits.item_timeout_s,
            "video": spec.video,
            "diffusion": spec.diffusion,
            "face_model": chain.face_model,  # video segments restore faces in this actor
            "faces": spec.faces,
        }, spec, actors, num_gpus, num_cpus)
        for member in chain.ensemble:
            branch = _in_actor_pool(branch, EnsembleMemberStage, {
                "model": member.model, "engine": spec.engine, "weights_dir": spec.weights_dir,
                "timeout_s": spec.limits.item_timeout_s,
            }, spec, actors, num_gpus, num_cpus)
        if chain.ensemble:
            branch = branch.map_batches(guard(BlendStage({route: chain.blend_weights()},
                                                         {route: chain.color or spec.stages.color})),
                                        batch_size=1, num_cpus=resources.read_cpus, batch_format="pyarrow",
                                        compute=tasks, runtime_env=worker_env)
        for face_stage in face_stages:
            # Faces restore in a pool of their own, over this route's background output.
            branch = _in_actor_pool(branch, face_stage, {
                "face_model": chain.face_model, "faces": spec.faces, "weights_dir": spec.weights_dir,
            }, spec, actors, num_gpus, num_cpus)
        branches.append(branch)
    dataset = branches[0].union(*branches[1:]) if len(branches) > 1 else branches[0]
    dataset = dataset.map_batches(guard(_PostStages(post)), batch_size=1, num_cpus=resources.read_cpus,
                                  batch_format="pyarrow", compute=_task_pool(total_blocks), runtime_env=worker_env)
    # On the Ray raysr started here its other processes make way for the models (raysr.job.priority).
    with model_actors_first(model_stages) if _embedded_cores else contextlib.nullcontext():
        yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


class _PostStages:
    """Colour → metrics → encode and write, one call per batch: what Ray Data would fuse into one task
    anyway, as one callable so the crash ledger (:mod:`raysr.job.crashes`) is asked once per item, not thrice."""

    def __init__(self, stages: list) -> None:
        self.stages = stages

    def __call__(self, batch: pa.Table) -> pa.Table:
        for stage in self.stages:
            batch = stage(batch)
        return batch
