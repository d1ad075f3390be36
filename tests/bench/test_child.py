"""The child-process side of the benches (:mod:`raysr.bench._child`)."""

from __future__ import annotations

import sys

import numpy as np

from raysr.bench._child import peak_rss_bytes, run_child


def test_a_childs_peak_memory_is_its_own_not_its_parents():
    # Linux keeps ru_maxrss across execve: a child of a parent holding 400 MB reported 400 MB.
    held = np.ones(400 << 20, dtype=np.uint8)  # touched, so resident in this (parent) process
    assert peak_rss_bytes() > 400 << 20
    code = "from raysr.bench._child import peak_rss_bytes, report; report({'peak': peak_rss_bytes()})"
    child = run_child([sys.executable, "-c", code], "peak memory child")
    assert 0 < child["peak"] < 200 << 20
    del held


def test_the_official_runners_copy_measures_the_same_way():
    code = ("import raysr.bench._official_runner as runner; "
            "from raysr.bench._child import peak_rss_bytes, report; "
            "report({'copy': runner._peak_rss_bytes(), 'ours': peak_rss_bytes()})")
    held = np.ones(300 << 20, dtype=np.uint8)
    child = run_child([sys.executable, "-c", code], "official runner's peak memory")
    assert 0 < child["copy"] < 200 << 20 and abs(child["copy"] - child["ours"]) < 20 << 20
    del held
