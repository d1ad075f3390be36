"""A lease on a job's output: two runs (say, two nights of a schedule) never process the
same output at once. A lease names its holder and expires, so a dead run does not
block the next one forever; the driver renews it while it works.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from raysr.storage import create_exclusive, delete, read_bytes, write_bytes

DEFAULT_TTL_S = 30 * 60


class LeaseHeldError(RuntimeError):
    """Another live run holds the lease."""


@dataclass
class Lease:
    """Held for ``run_id`` at ``uri`` until ``expires_at`` (epoch seconds)."""

    uri: str
    run_id: str
    ttl_s: float = DEFAULT_TTL_S
    expires_at: float = 0.0
    _renewed_at: float = 0.0

    def _payload(self) -> bytes:
        self.expires_at = time.time() + self.ttl_s
        self._renewed_at = time.monotonic()
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires_at": self.expires_at}).encode()

    def acquire(self) -> "Lease":
        """Take the lease, or take over an expired one.

        Raises:
            LeaseHeldError: naming the holder and when its lease expires.
        """
        if create_exclusive(self.uri, self._payload()):
            return self
        try:
            holder = json.loads(read_bytes(self.uri))
        except (OSError, ValueError):
            holder = {"run_id": "?", "host": "?", "expires_at": 0}
        if holder.get("expires_at", 0) > time.time():
            expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["expires_at"]))
            raise LeaseHeldError(
                f"run {holder.get('run_id')} on {holder.get('host')} (pid {holder.get('pid')}) is processing this "
                f"output; its lease at {self.uri} expires at {expires}. Wait for it, or delete the lease if that run is dead."
            )
        # Expired: the holder died. Replace its lease, then check we are the holder.
        delete(self.uri)
        if not create_exclusive(self.uri, self._payload()):
            raise LeaseHeldError(f"another run took over the expired lease at {self.uri} first")
        return self

    def renew(self, every_s: float = 60.0) -> None:
        """Push the expiry out again, at most once per ``every_s``."""
        if time.monotonic() - self._renewed_at >= every_s:
            write_bytes(self.uri, self._payload())

    def release(self) -> None:
        delete(self.uri)
