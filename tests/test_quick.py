"""`raysr upscale`'s loop in process: reads ahead, encodes beside the model, bounded."""

import os
import threading
import time

import cv2
import numpy as np

from raysr import quick
from raysr.engine import EngineOptions
from raysr.models.load import load_model


def _write_inputs(folder, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:02d}.png"), rng.integers(0, 256, (24, 32, 3), np.uint8))


def test_finished_outputs_wait_for_the_encoders_beyond_the_byte_budget(tmp_path, monkeypatch):
    _write_inputs(tmp_path / "in", 5)
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    write_atomic = quick.write_atomic

    def slow_write(path, data):
        time.sleep(0.05)  # an encoder slower than the model: the loop must wait, not pile up outputs
        write_atomic(path, data)
        with lock:
            events.append(("written", path.stem))

    upscale = quick.Upscaler.upscale

    def recorded_upscale(self, pixels):
        with lock:
            events.append(("model", str(len([kind for kind, _ in events if kind == "model"]))))
        return upscale(self, pixels)

    monkeypatch.setattr(quick, "write_atomic", slow_write)
    monkeypatch.setattr(quick.Upscaler, "upscale", recorded_upscale)
    monkeypatch.setattr(quick, "_WRITE_BYTES_IN_FLIGHT", 1)  # any output is over budget: one waits at most

    report = quick.upscale_path(tmp_path / "in", tmp_path / "out", load_model("bicubic"), EngineOptions(), progress=False)

    assert report.ok == 5 and not report.failures
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [f"{index:02d}.png" for index in range(5)]
    order = [f"{kind}:{name}" for kind, name in events]
    for index in range(2, 5):  # image k's output is written before the model starts on image k + 2
        assert order.index(f"written:{index - 2:02d}") < order.index(f"model:{index}"), order


def test_encoders_follow_the_usable_cores(monkeypatch):
    monkeypatch.setattr(quick.os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert quick._encode_threads() == 12
    monkeypatch.setattr(quick.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert quick._encode_threads() == 2  # the model's thread and one encoder still overlap
    monkeypatch.setattr(quick.os, "sched_getaffinity", lambda pid: set(range(256)), raising=False)
    assert quick._encode_threads() == quick._MAX_ENCODE_THREADS


def _upscale(tmp_path, **kwargs):
    options = kwargs.pop("options", EngineOptions())
    return quick.upscale_path(tmp_path / "in", tmp_path / "out", load_model("bicubic"), options, progress=False,
                              **kwargs)


def test_a_folder_run_again_goes_on_where_the_last_one_stopped(tmp_path):
    _write_inputs(tmp_path / "in", 5)
    assert _upscale(tmp_path).ok == 5
    (tmp_path / "out" / "01.png").unlink()  # what an interrupted run had not finished
    (tmp_path / "out" / "03.png").unlink()
    kept = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "out").iterdir()}

    report = _upscale(tmp_path)

    assert (report.ok, report.skipped, report.failures) == (2, 3, [])
    assert {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in kept} == kept  # not rewritten
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [f"{index:02d}.png" for index in range(5)]


def test_outputs_of_other_settings_or_older_than_their_input_are_redone(tmp_path):
    _write_inputs(tmp_path / "in", 3)
    _upscale(tmp_path)
    assert _upscale(tmp_path, options=EngineOptions(outscale=2)).ok == 3  # other settings: every image again
    assert _upscale(tmp_path, options=EngineOptions(outscale=2)).skipped == 3
    assert _upscale(tmp_path, quality=80, fmt="jpg").ok == 3  # another format writes other files
    later = time.time() + 5
    os.utime(tmp_path / "in" / "02.png", (later, later))  # the input changed since its output was made
    report = _upscale(tmp_path, options=EngineOptions(outscale=2))
    assert (report.ok, report.skipped) == (1, 2)
    assert _upscale(tmp_path, options=EngineOptions(outscale=2), force=True).ok == 3


def test_a_file_raysr_did_not_write_is_not_taken_for_a_finished_output(tmp_path):
    _write_inputs(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    cv2.imwrite(str(tmp_path / "out" / "00.png"), np.zeros((8, 8, 3), np.uint8))  # no raysr tag
    assert _upscale(tmp_path).ok == 1
    assert cv2.imread(str(tmp_path / "out" / "00.png")).shape[:2] == (96, 128)
