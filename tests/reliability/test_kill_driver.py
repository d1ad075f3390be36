"""kill -9 of the driver (`raysr run` with its own embedded Ray) at several points of a
real run, then a normal resume: every input ends with exactly one ``ok`` row in the
latest state, outputs are byte-identical to an uninterrupted run, and no partial
file ever sits under a final name.

The driver runs in its own session (``start_new_session``) and the whole process
group is killed, so the session's ``ray_cluster`` in this process is never touched.
Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from factories import compact_state
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_outcomes, read_manifest

ITEMS = 8
REPO = Path(__file__).resolve().parents[2]


def _session_pids(session: int) -> list[int]:
    """Processes in ``session`` (the driver's), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session:  # state ppid pgrp session …
                pids.append(int(entry.name))
    return pids


def _cmdlines(pids: list[int]) -> list[bytes]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
    return lines


def _final_outputs(out: Path) -> list[Path]:
    return sorted(path for path in out.rglob("*.png") if not path.name.startswith(".")) if out.exists() else []


def _start_driver(job: Path, log: Path, *args: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    # No RAY_ADDRESS: `raysr run` must start its own Ray even with the session's cluster running.
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "raysr", "run", str(job), *args], cwd=REPO, env=env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(driver: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGKILL the driver's whole process group, then wait until nothing of its session is left."""
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    driver.wait(timeout=timeout_s)
    stop = time.monotonic() + timeout_s
    while time.monotonic() < stop:
        left = _session_pids(driver.pid)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    pytest.fail(f"processes of the killed driver's session survived: {_session_pids(driver.pid)}")


def _kill_when(job: Path, log: Path, out: Path, condition, what: str, timeout_s: float = 90.0) -> bool:
    """Start a driver, SIGKILL its group once ``condition(driver)`` holds. False if it finished first."""
    driver = _start_driver(job, log)
    stop = time.monotonic() + timeout_s
    try:
        while time.monotonic() < stop:
            if driver.poll() is not None:  # finished (or refused to start) before the point
                return False
            if condition(driver):
                _kill_group(driver)
                return True
            time.sleep(0.02)
        pytest.fail(f"kill point {what!r} not reached in {timeout_s:.0f} s; driver log:\n{log.read_text()[-3000:]}")
    finally:
        if driver.poll() is None:
            _kill_group(driver)
    return False


def _check_no_partial_finals(out: Path, reference: Path) -> None:
    """Every file under a final name is complete: byte-identical to the uninterrupted run's."""
    for path in _final_outputs(out):
        assert path.read_bytes() == (reference / path.relative_to(out)).read_bytes(), f"partial or wrong {path}"


def _inputs_and_model(tmp_path: Path, photo, side: int) -> tuple[Path, Path]:
    """ITEMS crops of ``side`` px and a small random Compact model: a real run, a few seconds long."""
    root = tmp_path / "in"
    root.mkdir()
    for index in range(ITEMS):
        cv2.imwrite(str(root / f"i{index}.png"), photo[index * 40: index * 40 + side, 100:100 + side])
    model = tmp_path / "tiny.pth"
    torch.save({"params_ema": compact_state(num_conv=8, num_feat=32)}, model)
    return root, model


def test_driver_killed_at_several_points_then_resumed(ray_cluster, tmp_path, photo, figures):
    root, model = _inputs_and_model(tmp_path, photo, 64)
    job = {"name": "kill-driver", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
           "model": str(model), "engine": {"precision": "fp32"}, "stages": {"metrics": False}}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    out, log = tmp_path / "out", tmp_path / "driver.log"

    # The uninterrupted reference, in this process on the session's cluster.
    reference = tmp_path / "reference"
    clean = run_job(parse_spec({**job, "name": "kill-reference", "output": {"path": str(reference)}}), progress=False)
    assert clean.counts["ok"] == ITEMS

    def probing(driver):  # a probe task of this driver is running, no output written yet
        return not _final_outputs(out) and any(b"ProbeStage" in line for line in _cmdlines(_session_pids(driver.pid)))

    points = [
        ("during the probe", probing),
        ("after the first output", lambda driver: len(_final_outputs(out)) >= 1),
        ("after half the outputs", lambda driver: len(_final_outputs(out)) >= ITEMS // 2),
    ]
    kills = 0
    for what, condition in points:
        if _kill_when(job_file, log, out, condition, what):
            kills += 1
            _check_no_partial_finals(out, reference)
    # Each killed driver left its lease behind; the next one (same machine, its pid gone) took it over.
    assert kills >= 2, f"only {kills} kill points were reached; driver log:\n{log.read_text()[-3000:]}"
    assert "ended without releasing its lease" in log.read_text()

    # Resume with a normal run (a fresh driver, its own Ray), bounded.
    driver = _start_driver(job_file, log)
    try:
        assert driver.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            _kill_group(driver)
    latest = latest_outcomes(read_manifest(str(out / "_raysr" / "manifest"))).to_pylist()
    assert sorted(row["input_uri"] for row in latest) == sorted(str(root / f"i{i}.png") for i in range(ITEMS))
    assert all(row["status"] == "ok" for row in latest), [(r["input_uri"], r["status"]) for r in latest]
    # Exactly one ok row per item across all runs (a killed run never left a row it then redid).
    every = read_manifest(str(out / "_raysr" / "manifest")).to_pylist()
    ok_per_item = {uri: sum(1 for row in every if row["input_uri"] == uri and row["status"] == "ok")
                   for uri in {row["input_uri"] for row in every}}
    duplicates = sum(count - 1 for count in ok_per_item.values() if count > 1)
    _check_no_partial_finals(out, reference)
    assert len(_final_outputs(out)) == ITEMS
    assert not [path for path in out.rglob("*") if path.name.endswith(".raysr-tmp")], "temp files left behind"
    figures["driver kills survived"] += kills
    figures["items lost"] += ITEMS - len(latest)
    figures["duplicate ok rows (kill)"] += duplicates
    print(f"\ndriver kills survived: {kills}/{len(points)}; ok rows per item: {sorted(ok_per_item.values())}")
    assert duplicates == 0, ok_per_item


# SIGTERM meets raysr's handler (143) before and after `ray.init`, whose own handler aborted a
# driver still unwinding 3 s later (raysr.job.plan._sigterm_kept).
@pytest.mark.parametrize("stop, joined, exit_codes", [
    (signal.SIGINT, False, {130}),  # Ctrl-C on a laptop
    (signal.SIGTERM, False, {143}),  # a scheduler's time limit
    (signal.SIGTERM, True, {143}),  # `raysr stop` / a deleted pod: the driver of a job on a cluster
], ids=["ctrl-c", "sigterm-own-ray", "sigterm-on-a-cluster"])
def test_a_driver_stopped_by_a_signal_records_its_rows_and_frees_its_lease(ray_cluster, tmp_path, photo, stop,
                                                                           joined, exit_codes):
    root, model = _inputs_and_model(tmp_path, photo, 96)
    job_file = tmp_path / "job.yaml"
    args = ("--address", ray_cluster.address) if joined else ()
    # Rows reach the driver a little after their outputs are written, so a stop can come before any
    # has: then it records none, which is right but shows nothing. Each attempt stops later.
    recorded: list[dict] = []
    for attempt, outputs_before_stop in enumerate((ITEMS // 2, ITEMS - 2, ITEMS - 1)):
        out, log = tmp_path / f"out{attempt}", tmp_path / f"driver{attempt}.log"
        job = {"name": "stopped", "inputs": [str(root)], "output": {"path": str(out)}, "model": str(model),
               "engine": {"precision": "fp32"}, "stages": {"metrics": False}}
        job_file.write_text(yaml.safe_dump(job))
        driver = _start_driver(job_file, log, *args)
        try:
            stop_at = time.monotonic() + 90
            while (len(_final_outputs(out)) < outputs_before_stop and driver.poll() is None
                   and time.monotonic() < stop_at):
                time.sleep(0.02)
            if driver.poll() is not None:  # it finished first: nothing was stopped
                continue
            driver.send_signal(stop)
            code = driver.wait(timeout=60)
        finally:
            if driver.poll() is None:
                _kill_group(driver)
        text = log.read_text()
        assert code in exit_codes, text[-3000:]
        assert not (out / "_raysr" / "lease.json").exists(), "the stopped run left its lease"
        recorded = read_manifest(str(out / "_raysr" / "manifest")).to_pylist()
        assert f"stopped early: {len(recorded)} rows recorded" in text, text[-3000:]
        if recorded:
            break
    assert recorded, "no attempt stopped the run after its first rows had reached the driver"
    assert all(row["status"] == "ok" for row in recorded)
    for row in recorded:  # a row says ok only for an output that is there, whole
        assert Path(row["output_uri"]).stat().st_size == row["output_size"]

    # The next run skips what the stopped one recorded and does the rest.
    resumed = run_job(parse_spec(job), address=ray_cluster.address, progress=False)
    assert resumed.counts["skipped"] == len(recorded) and resumed.counts["ok"] == ITEMS - len(recorded)
    latest = latest_outcomes(read_manifest(str(out / "_raysr" / "manifest"))).to_pylist()
    assert len(latest) == ITEMS and all(row["status"] == "ok" for row in latest)
