"""CPU priority on the Ray that ``raysr run`` starts on this machine: the model actors first.

Ray starts its workers, the model actors included, at nice 15 (its ``worker_niceness``) and its
own processes (GCS, raylet, agents, monitors) at nice 0. On a laptop's few cores a model's
OpenMP forward pass, whose threads wait for each other at every layer, loses far more than the
CPU time of the processes that preempt it: on 2 cores, five processes waking for ~7 % of a core
each slowed a 256² RRDBNet forward by 25 % at nice 0 and by 3.5 % at nice 19. So while the
process pass runs, every other process of that Ray (read and write tasks, Ray Data's and raysr's
helper actors, Ray's daemons) goes to nice 19: they still get all the CPU the model leaves, and
no longer cut into its layers.

Only ever raised (an unprivileged process cannot lower a niceness again), only on Linux (it reads
``/proc``), and never on a cluster that raysr joined: those processes belong to someone else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from raysr.job._proc import stat_fields

_LOG = logging.getLogger(__name__)
_PROC = Path("/proc")
HELPERS_NICE = 19
# Workers Ray may yet make a model actor, left alone: pooled ones, and new ones not yet titled.
_UNASSIGNED_WORKER = ("ray::IDLE", "default_worker.py")


def lower_helpers(root_pid: int, model_stages: Collection[str], seen: dict[int, str] | None = None) -> list[int]:
    """Set every thread of every Ray process below ``root_pid`` to nice 19, except the model
    actors (processes whose title names one of ``model_stages``, as Ray titles an actor
    ``ray::MapWorker(MapBatches(UpscaleStage))``) and workers not yet given work: a worker that
    was lowered keeps that niceness for life, so one that became a model actor afterwards (a
    restarted actor, on a reused worker) would compete as an equal. Returns the pids changed.

    A Ray process: a worker (titled ``ray::…``) or one of Ray's daemons (run from Ray's package);
    other children of the driver (a notebook's, an application's) keep their priority.
    ``seen`` (pid → title), kept between calls, skips the processes already looked at under the
    same title (threads a lowered thread starts inherit its niceness).

    >>> lower_helpers(os.getpid(), {"UpscaleStage"})  # doctest: +SKIP
    [41235, 41240, ...]
    """
    seen = {} if seen is None else seen
    changed = []
    for pid in _descendants(root_pid):
        title = _title(pid)
        if seen.get(pid) == title:
            continue
        seen[pid] = title
        if (not _is_ray(title) or any(marker in title for marker in _UNASSIGNED_WORKER)
                or any(stage in title for stage in model_stages)):
            continue
        if _renice_threads(_thread_ids(pid), HELPERS_NICE):
            changed.append(pid)
    return changed


@contextlib.contextmanager
def model_actors_first(model_stages: Collection[str], every_s: float = 2.0) -> Iterator[None]:
    """While the block runs, keep this process's descendants but the model actors at nice 19
    (:func:`lower_helpers`), checking every ``every_s`` for workers Ray started since; and the
    threads this process starts meanwhile too (Ray Data's executor, which wakes every few
    milliseconds, and its iterators: they end with the dataset, so the caller keeps its place).
    """
    if not _PROC.is_dir():
        yield
        return
    stop = threading.Event()
    driver_pid = os.getpid()
    threads_before = set(_thread_ids(driver_pid))

    def keep_lowering() -> None:
        seen: dict[int, str] = {}
        while True:
            try:
                lower_helpers(driver_pid, model_stages, seen=seen)
                _renice_threads(set(_thread_ids(driver_pid)) - threads_before, HELPERS_NICE)
            except OSError as error:  # a /proc this process may not read: run unchanged
                _LOG.debug("left CPU priorities as Ray set them: %s", error)
                return
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=keep_lowering, name="raysr-priority", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _descendants(root_pid: int) -> list[int]:
    """Every process below ``root_pid`` (children, their children, …), from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields is None:  # it exited since the listing
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = [], [root_pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def _title(pid: int) -> str:
    """The process's command line as ``ps`` shows it (Ray's workers rewrite theirs to ``ray::…``)."""
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_ray(title: str) -> bool:
    return title.startswith("ray::") or f"{os.sep}ray{os.sep}" in title


def _thread_ids(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC / str(pid) / "task")]
    except OSError:  # it exited
        return []


def _renice_threads(thread_ids: Iterable[int], nice: int) -> bool:
    """Raise each of ``thread_ids`` to ``nice`` (Linux's setpriority on a pid sets one
    thread only, and threads started later inherit their creator's). True when any changed."""
    changed = False
    for thread_id in thread_ids:
        try:
            if os.getpriority(os.PRIO_PROCESS, thread_id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread_id, nice)
                changed = True
        except (ProcessLookupError, PermissionError):  # it exited, or is not ours
            continue
    return changed
