"""Benchmarks that must start clean (peak memory, Ray, the official venv) run in a child
process, which reports one line ``RAYSR_BENCH_JSON {...}`` on stdout; this is both ends.

(:mod:`raysr.bench._official_runner` prints the same line itself: it never imports raysr.)
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

MARKER = "RAYSR_BENCH_JSON "


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started its program (Linux ``VmHWM``).

    Not ``ru_maxrss``: Linux keeps that across ``execve``, so a child started by a parent
    holding torch and a model reported the parent's peak whenever its own was lower.
    (:mod:`raysr.bench._official_runner` keeps a copy: it runs without raysr.)
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # elsewhere: the best there is


def report(values: dict) -> None:
    """Child side: print ``values`` as the marker line."""
    print(MARKER + json.dumps(values), flush=True)


def run_child(command: list[str], what: str, timeout_s: float | None = None,
              error: type[Exception] = RuntimeError, fix: str = "") -> dict:
    """Run ``command``; return its last marker line's JSON.

    Raises:
        ``error``: the child exited non-zero or printed no marker line; the message names
        ``what``, the exit code, the end of its stderr and ``fix``.
    """
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode or not lines:
        raise error(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}" + (f"\n{fix}" if fix else ""))
    return json.loads(lines[-1][len(MARKER):])
