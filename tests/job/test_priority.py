"""CPU priority of the embedded Ray's processes, on a real process tree titled as Ray titles its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from raysr.job.priority import HELPERS_NICE, lower_helpers

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")

_TITLES = {
    "model": "ray::MapWorker(MapBatches(UpscaleStage))",
    "task": "ray::ReadBytesStage",
    "idle": "ray::IDLE",
    "fresh": "/venv/lib/python3.11/site-packages/ray/_private/workers/default_worker.py",  # not yet titled
    "daemon": "/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet",
    "other": "notebook-helper",
}

# A stand-in driver: it starts one process per title (each with a second thread, and the task
# with a child of its own), optionally inside model_actors_first, then prints each one's
# niceness per thread once asked to (a line on stdin) and exits.
_DRIVER = textwrap.dedent("""
    import contextlib, json, os, subprocess, sys, threading, time
    from raysr.job.priority import model_actors_first

    TITLES = json.loads(sys.argv[1])
    # A child titled like Ray's has no usable sys.executable (Python derives it from argv[0]).
    CHILD = (f"PYTHON = {sys.executable!r}\\n"
             "import subprocess, sys, threading, time\\n"
             "threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\\n"
             "if sys.argv[1] == 'spawn':\\n"
             "    subprocess.Popen(['ray::_StatsActor', '-c', 'import time; time.sleep(120)'],"
             " executable=PYTHON)\\n"
             "print('ready', flush=True)\\n"
             "time.sleep(120)\\n")

    def niceness(pid):
        return [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")]

    def driver_thread():
        thread = threading.Thread(target=time.sleep, args=(120,), daemon=True)
        thread.start()
        return thread

    before = driver_thread()
    scope = model_actors_first({"UpscaleStage"}, every_s=0.2) if sys.argv[2] == "lowering" else contextlib.nullcontext()
    with scope:
        during = driver_thread()
        pids = {}
        for role, title in TITLES.items():
            child = subprocess.Popen([title, "-c", CHILD, "spawn" if role == "task" else "-"],
                                     executable=sys.executable, stdout=subprocess.PIPE, text=True)
            child.stdout.readline()
            pids[role] = child.pid
        time.sleep(0.5)  # the grandchild is up
        grandchild = [int(p) for p in os.listdir("/proc") if p.isdigit()
                      and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(pids["task"])]
        pids["grandchild"] = grandchild[0]
        print(json.dumps(pids), flush=True)
        sys.stdin.readline()
        report = {role: niceness(pid) for role, pid in pids.items()}
        report["driver"] = {name: os.getpriority(os.PRIO_PROCESS, tid) for name, tid in
                            (("main", threading.main_thread().native_id), ("before", before.native_id),
                             ("during", during.native_id))}
        print(json.dumps(report), flush=True)
        for pid in pids.values():
            os.kill(pid, 9)
""")


def _start_driver(lowering: bool) -> tuple[subprocess.Popen, dict[str, int]]:
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps(_TITLES), "lowering" if lowering else "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return driver, json.loads(driver.stdout.readline())


def _report(driver: subprocess.Popen) -> dict[str, list[int]]:
    driver.stdin.write("report\n")
    driver.stdin.flush()
    niceness = json.loads(driver.stdout.readline())
    driver.wait(timeout=30)
    return niceness


def _expect_lowered(niceness: dict, start: int) -> None:
    for role in ("task", "grandchild", "daemon"):
        assert niceness[role] == [HELPERS_NICE] * len(niceness[role]), (role, niceness)
    for role in ("model", "idle", "fresh", "other"):
        assert niceness[role] == [start] * len(niceness[role]), (role, niceness)
    assert all(len(niceness[role]) >= 2 for role in _TITLES), niceness  # every thread, not only the first


def test_every_thread_of_rays_other_processes_is_lowered_and_the_model_actor_keeps_its_place():
    start = os.getpriority(os.PRIO_PROCESS, 0)
    if start >= HELPERS_NICE:
        pytest.skip(f"this test runs at nice {start} already")
    driver, pids = _start_driver(lowering=False)
    try:
        changed = lower_helpers(driver.pid, {"UpscaleStage"})
        assert sorted(changed) == sorted(pids[role] for role in ("task", "grandchild", "daemon"))
        assert lower_helpers(driver.pid, {"UpscaleStage"}) == [], "a second pass changes nothing"
    finally:
        niceness = _report(driver)
    _expect_lowered(niceness, start)


def test_while_the_pass_runs_workers_started_after_it_began_are_lowered_too():
    start = os.getpriority(os.PRIO_PROCESS, 0)
    if start >= HELPERS_NICE:
        pytest.skip(f"this test runs at nice {start} already")
    driver, _ = _start_driver(lowering=True)
    time.sleep(1.0)  # five checks at every_s=0.2
    niceness = _report(driver)
    # threads the driver started inside the scope (Ray Data's, which end with the dataset) too
    assert niceness["driver"] == {"main": start, "before": start, "during": HELPERS_NICE}
    _expect_lowered(niceness, start)
    assert driver.returncode == 0
