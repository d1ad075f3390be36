"""What a running job shows of its progress: items done, rate and time left.

On a terminal one line is rewritten in place as rows come back. Elsewhere (the log of a
job sent with ``raysr submit``, a CI log) a line is logged at most once a minute, so that
``raysr logs --follow`` shows an hours-long job moving instead of nothing until its end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter

_LOG = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """``4210`` → ``"1 h 10 min"``, ``250`` → ``"4 min 10 s"``, ``nan`` → ``"?"``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class Progress:
    """Counts item statuses as they arrive and shows them.

    Args:
        total: items listed.
        mode: ``"line"`` (rewritten in place on stderr), ``"log"`` (a log line every
            ``every_s``), or ``"off"``.
        every_s: the least time between two ``"log"`` lines.
    """

    def __init__(self, total: int, mode: str, every_s: float = 60.0) -> None:
        if mode not in ("line", "log", "off"):
            raise ValueError(f"progress mode must be line, log or off, not {mode!r}")
        self.total, self.mode, self.every_s = total, mode, every_s
        self.started = time.perf_counter()
        self._logged_at = self.started
        self.counts: Counter = Counter()

    def add(self, statuses: list[str]) -> None:
        self.counts.update(statuses)
        if self.mode == "line":
            print(f"\r{self.summary()} ", end="", file=sys.stderr)
        elif self.mode == "log" and time.perf_counter() - self._logged_at >= self.every_s:
            self._logged_at = time.perf_counter()
            _LOG.info("progress: %s", self.summary())

    def summary(self) -> str:
        """``"120/5000  ok 118  failed 1  skipped 1  2.31 items/s  ETA 35 min 12 s"``."""
        done = sum(self.counts.values())
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        return (f"{done}/{self.total}  ok {self.counts['ok'] + self.counts['flagged']}  failed {self.counts['error']}"
                f"  skipped {self.counts['skipped']}  {rate:.2f} items/s  ETA {duration(eta)}")

    def close(self) -> None:
        if self.mode == "line":
            print(file=sys.stderr)
