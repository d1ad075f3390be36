"""A worker killed mid-job (OOM kill, segfault) is restarted; nothing is lost or duplicated."""

import os
import signal
import threading
import time
from pathlib import Path

import cv2

from factories import compact_state
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import read_manifest


def _upscale_actor_pids() -> list[int]:
    """Ray titles actor processes ``ray::MapWorker(MapBatches(UpscaleStage))``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"UpscaleStage" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_one_actor_after_first_outputs(output_dir, killed: list, deadline_s: float = 120.0) -> None:
    """SIGKILL an upscale actor once two outputs exist; ``killed`` gets how many had been written."""
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        written = list(output_dir.rglob("*.png")) if output_dir.exists() else []
        pids = _upscale_actor_pids()
        if len(written) >= 2 and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(len(written))
            return
        time.sleep(0.05)


def test_killed_actor_is_restarted_and_every_item_lands_once(ray_cluster, tmp_path, photo, save_state):
    root = tmp_path / "in"
    root.mkdir()
    for index in range(10):
        cv2.imwrite(str(root / f"i{index}.png"), photo[index * 40: index * 40 + 96, 100:196])
    model = str(save_state(compact_state(num_conv=8, num_feat=32)))
    spec = parse_spec({"name": "kill", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": model, "engine": {"precision": "fp32"}, "stages": {"metrics": False}})
    killed: list[int] = []
    killer = threading.Thread(target=_kill_one_actor_after_first_outputs, args=(tmp_path / "out", killed))
    killer.start()
    report = run_job(spec, progress=False)
    killer.join()
    assert killed, "the test never saw an upscale actor to kill"
    assert killed[0] < 10, "the actor was killed after the last output: nothing was left to redo"
    assert report.counts["ok"] == 10 and not report.missing
    rows = read_manifest(spec.manifest_uri).to_pylist()
    assert sorted(row["input_uri"] for row in rows) == sorted(str(root / f"i{i}.png") for i in range(10))

    # Outputs are byte-identical to an uninterrupted run.
    clean = run_job(spec.model_copy(update={"output": spec.output.model_copy(update={"path": str(tmp_path / "clean")}),
                                            "manifest": str(tmp_path / "clean-manifest")}), progress=False)
    assert clean.counts["ok"] == 10
    for index in range(10):
        assert (tmp_path / "out" / f"i{index}.png").read_bytes() == (tmp_path / "clean" / f"i{index}.png").read_bytes()
