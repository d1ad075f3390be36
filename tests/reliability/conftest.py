"""Figures the reliability suite reports (kinds tried, kills survived, items lost …).

Each test adds to :data:`FIGURES` through the ``figures`` fixture; the totals are
printed at the end of the session (in pytest's terminal summary, visible without ``-s``).
"""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES: Counter = Counter()
TABLES: list[str] = []


@pytest.fixture
def figures() -> Counter:
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES and not TABLES:
        return
    terminalreporter.section("raysr reliability figures")
    for table in TABLES:
        terminalreporter.write_line(table)
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name:>28}: {FIGURES[name]}")


@pytest.fixture
def tables() -> list[str]:
    return TABLES
