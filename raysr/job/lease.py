"""A lease on a job's output: two runs (say, two nights of a schedule) never process the
same output at once. A lease names its holder and expires, so a dead run does not
block the next one forever; the driver renews it while it works.

A run killed outright (``kill -9``, the OOM killer, a closed laptop lid that ended in a
crash) leaves its lease behind. When the next run is on the same machine, in the same
process namespace, it can prove the holder is gone (its pid no longer runs, or now runs
another process) and takes the lease over at once: ``raysr run`` again resumes where the
dead run stopped instead of waiting out the expiry. A holder on another machine is
trusted until its lease expires.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from raysr.job._proc import stat_fields
from raysr.storage import create_exclusive, delete, read_bytes, write_bytes

DEFAULT_TTL_S = 30 * 60
_LOG = logging.getLogger(__name__)


class LeaseHeldError(RuntimeError):
    """Another live run holds the lease."""


def _read_proc(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:  # no /proc (macOS), or the process is gone
        return None


def _machine() -> dict:
    """Where this process runs: host name, kernel boot and pid namespace (the last two where /proc has them).

    Two processes whose ``_machine()`` are equal see the same pids, so one can tell whether the other still runs.
    """
    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = None
    return {"host": socket.gethostname(), "boot_id": _read_proc("/proc/sys/kernel/random/boot_id"),
            "pid_ns": pid_namespace}


def _started_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22); None without /proc."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _holder_is_gone(holder: dict) -> bool:
    """True only when ``holder`` provably no longer runs: it ran where this process runs and its pid is free
    or now belongs to a process started at another time."""
    if any(holder.get(key) != value for key, value in _machine().items()):
        return False  # another machine, or one we cannot compare with: trust the expiry
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists and belongs to another user
        pass
    started = holder.get("pid_started")
    return started is not None and _started_ticks(pid) not in (None, started)


@dataclass
class Lease:
    """Held for ``run_id`` at ``uri`` until ``expires_at`` (epoch seconds)."""

    uri: str
    run_id: str
    ttl_s: float = DEFAULT_TTL_S
    expires_at: float = 0.0
    #: The run whose lease this one replaced (it ended without releasing it), else None: what a
    #: writer of that run left half-written may still lie in the output.
    took_over_from: str | None = None
    _renewed_at: float = 0.0

    def _payload(self) -> bytes:
        self.expires_at = time.time() + self.ttl_s
        self._renewed_at = time.monotonic()
        return json.dumps({"run_id": self.run_id, **_machine(), "pid": os.getpid(),
                           "pid_started": _started_ticks(os.getpid()), "expires_at": self.expires_at}).encode()

    def acquire(self) -> "Lease":
        """Take the lease, or take over an expired one or one whose holder is provably dead.

        Raises:
            LeaseHeldError: naming the holder and when its lease expires.
        """
        if create_exclusive(self.uri, self._payload()):
            return self
        holder = self._holder()
        if holder.get("expires_at", 0) > time.time():
            if not _holder_is_gone(holder):
                expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["expires_at"]))
                raise LeaseHeldError(
                    f"run {holder.get('run_id')} on {holder.get('host')} (pid {holder.get('pid')}) is processing "
                    f"this output; its lease at {self.uri} expires at {expires}. Wait for it, or delete the lease "
                    "if that run is dead.")
            _LOG.warning("run %s (pid %s on this machine) ended without releasing its lease at %s; taking it "
                         "over, and this run resumes where it stopped", holder.get("run_id"), holder.get("pid"),
                         self.uri)
        # The holder died. Replace its lease, unless another run has replaced it meanwhile, then
        # check we are the holder.
        if self._holder().get("run_id") == holder.get("run_id"):
            delete(self.uri)
        if not create_exclusive(self.uri, self._payload()):
            raise LeaseHeldError(f"another run took over the lease of dead run {holder.get('run_id')} at "
                                 f"{self.uri} first")
        self.took_over_from = str(holder.get("run_id"))
        return self

    def _holder(self) -> dict:
        try:
            holder = json.loads(read_bytes(self.uri))
        except (OSError, ValueError):  # gone, or cut short by a crash while it was written
            return {"run_id": "?", "host": "?", "expires_at": 0}
        return holder if isinstance(holder, dict) else {"run_id": "?", "host": "?", "expires_at": 0}

    def renew(self, every_s: float = 60.0) -> None:
        """Push the expiry out again, at most once per ``every_s``.

        A renewal that fails (a store's bad minute after its retries, a full disk) is logged and
        tried again ``every_s`` later: the lease has ``ttl_s`` to spare, and a run hours into its
        work should not die of it.
        """
        if time.monotonic() - self._renewed_at < every_s:
            return
        expires_at = self.expires_at
        try:
            write_bytes(self.uri, self._payload())
        except OSError as error:
            self.expires_at = expires_at  # the stored lease still says the old time
            _LOG.warning("could not renew the lease at %s (%s); trying again in %.0f s, before it expires at %s",
                         self.uri, error, every_s, time.strftime("%H:%M:%S UTC", time.gmtime(expires_at)))

    def release(self) -> None:
        delete(self.uri)
