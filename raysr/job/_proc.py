"""``/proc/<pid>/stat``, read in one place: the lease (is its holder alive?) and the CPU
priorities (which processes are Ray's?) both need fields of it. Linux only."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (``state``) on: index 1 is the parent
    pid, index 19 the start time in clock ticks since boot. None without /proc or once the
    process is gone. The second field (the command name) may hold spaces and parentheses, so
    the fields are split after its last ``)``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()
