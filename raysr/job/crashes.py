"""Items that kill their worker end as error rows, instead of being retried for ever.

Ray retries a task or actor call whose worker process died (an out-of-memory kill, a
segfault in a decoder, a GPU fault) without limit, which is right for a node lost under
a job, and wrong for an item that kills every worker it reaches: a 400 MP scan whose 4×
output does not fit the node's memory would be read, upscaled and killed again until
someone stops the job, and no other item would be recorded as done.

Every stage's call goes through :func:`guard`. Ray's first try of a call runs as it is: nothing
can have died under its items yet, and it costs nothing. A retry (a task's try number above 0, or
any call of an actor Ray restarted) runs its items one at a time, alone in its process, each noted
in a ledger (one small Ray actor per driver) while it runs, so a death now is that item's; an item
the ledger finds still noted has killed a worker in a retry as well as in the first try, and
becomes a ``worker_died`` error row that the later stages pass through
(:data:`MAX_DEATHS` in all). The rest of the run goes on. A retry costs two actor round trips per
item (~1 ms each); a restarted model actor runs its calls one at a time for the rest of its life.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import pyarrow as pa
import ray

from raysr.stages._batch import WorkerDiedError, batch_of, fail, rows_of

MAX_DEATHS = 2
"""Worker deaths under one item before it is failed: one may be bad luck (a neighbour's memory)."""

_CAREFUL = threading.Lock()  # a retried call runs alone in its process: no neighbour shares the blame
_ledgers: dict[str, Any] = {}


@ray.remote(num_cpus=0, max_restarts=0)
class CrashLedger:
    """Which items each stage has in flight, and how many workers died under them."""

    def __init__(self) -> None:
        self.in_flight: set[tuple[str, str]] = set()
        self.deaths: dict[tuple[str, str], int] = {}

    def start(self, stage: str, keys: list[str]) -> list[int]:
        """Note ``keys`` in flight; returns each one's deaths, counting the previous call if it never finished."""
        counts = []
        for key in keys:
            entry = (stage, key)
            if entry in self.in_flight:
                self.deaths[entry] = self.deaths.get(entry, 0) + 1
            self.in_flight.add(entry)
            counts.append(self.deaths.get(entry, 0))
        return counts

    def finish(self, stage: str, keys: list[str]) -> None:
        for key in keys:
            self.in_flight.discard((stage, key))
            self.deaths.pop((stage, key), None)

    def reset(self) -> None:
        """A new run of the same driver: what a stopped run left in flight says nothing about this one."""
        self.in_flight.clear()
        self.deaths.clear()


def ledger_name() -> str:
    """One ledger per Ray job (driver): its tasks and actors find it by this name."""
    return f"raysr-crash-ledger-{ray.get_runtime_context().get_job_id()}"


def start_ledger() -> None:
    """Start this driver's ledger, or empty the one a previous run of this driver started."""
    name = ledger_name()
    if _ledgers.get(name) is None:
        # Held here for the driver's life: an actor lives while its creator's handle does, named or not.
        _ledgers[name] = CrashLedger.options(name=name, get_if_exists=True).remote()
    ray.get(_ledgers[name].reset.remote())


def _ledger():
    if not ray.is_initialized():  # a stage called outside a raysr run (tests, benches): no guard
        return None
    name = ledger_name()
    if name not in _ledgers:
        try:
            _ledgers[name] = ray.get_actor(name)
        except ValueError:  # Ray is up, but no raysr run started a ledger in this job
            _ledgers[name] = None
    return _ledgers[name]


@functools.cache
def _actor_was_restarted(actor_id: str) -> bool:
    """Asked once per actor (a GCS query); keyed by its id, as Ray may reuse a worker process."""
    return ray.get_runtime_context().was_current_actor_reconstructed


def _first_attempt() -> bool:
    """This call is Ray's first try of it, so no worker can have died under its items yet.

    In an actor Ray never restarted: yes. In one it restarted: maybe not, and Ray does not number
    an actor call's tries. In a task: its try number is 0 (read through the core worker, as Ray has
    no public call for it; where that cannot be read, every call counts as a possible retry).
    """
    actor_id = ray.get_runtime_context().get_actor_id()
    if actor_id is not None:
        return not _actor_was_restarted(actor_id)
    try:
        return ray._private.worker.global_worker.core_worker.get_current_task_attempt_number() == 0
    except Exception:  # noqa: BLE001 - a Ray without it: the careful path is always right, only slower
        return False


def _item_keys(batch: pa.Table) -> list[str]:
    """An item, or one segment of a video: what one row of a stage's batch stands for."""
    items = batch.column("item_id").to_pylist()
    if "segment_index" not in batch.column_names:
        return [str(item) for item in items]
    return [f"{item}#{segment}" for item, segment in zip(items, batch.column("segment_index").to_pylist())]


def guarded_call(call, batch: pa.Table, stage: str) -> pa.Table:
    """``call(batch)``; on a retry, one item at a time under the ledger (see the module docstring)."""
    if _first_attempt():
        return call(batch)
    ledger = _ledger()
    if ledger is None or not isinstance(batch, pa.Table) or "item_id" not in batch.column_names:
        return call(batch)
    with _CAREFUL:  # alone in its process: a death now is this item's
        parts = []
        for index, key in enumerate(_item_keys(batch)):
            row = batch.slice(index, 1)
            (died,) = ray.get(ledger.start.remote(stage, [key]))
            if died >= MAX_DEATHS - 1:  # + the death that made this call a retry
                row = _as_failed(row, stage, died + 1)
            parts.append(call(row))
            ray.get(ledger.finish.remote(stage, [key]))
        return pa.concat_tables(parts, promote_options="default")


def _as_failed(row: pa.Table, stage: str, deaths: int) -> pa.Table:
    (values,) = rows_of(row)
    fail(values, stage, WorkerDiedError(
        f"the {stage} worker died {deaths} times while this item was in it (killed for memory, or a crash in a "
        "decoder or the GPU driver: the node's raylet and dmesg logs say which); it is failed so the run can "
        "finish. If it is a very large image, lower limits.max_pixels or give the workers more memory"))
    return batch_of([values])


def guard(stage: Any) -> Any:
    """``stage`` (a stage class, or a stage object for task pools) whose calls go through :func:`guarded_call`.

    The guarded class keeps the stage's name, which is what Ray shows for its workers.
    """
    stage_class = stage if isinstance(stage, type) else type(stage)
    name = stage_class.__name__

    def __call__(self, batch):
        return guarded_call(super(guarded, self).__call__, batch, name)

    guarded = type(name, (stage_class,), {"__call__": __call__, "__module__": stage_class.__module__})
    if isinstance(stage, type):
        return guarded
    instance = object.__new__(guarded)
    instance.__dict__.update(stage.__dict__)
    return instance
