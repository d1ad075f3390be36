"""The progress a running job shows (raysr/job/progress.py)."""

from __future__ import annotations

import logging

import pytest

from raysr.job.progress import Progress, duration
from raysr.job.run import _progress_mode


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (250, "4 min 10 s"),
                                           (4210, "1 h 10 min"), (float("nan"), "?"), (float("inf"), "?")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert duration(seconds) == text


def test_a_terminal_gets_one_line_rewritten_in_place(capsys):
    progress = Progress(10, "line")
    progress.add(["ok", "ok", "flagged"])
    progress.add(["error", "skipped"])
    progress.close()
    err = capsys.readouterr().err
    assert err.count("\r") == 2 and err.endswith("\n")
    assert "5/10  ok 3  failed 1  skipped 1" in err.splitlines()[-1].split("\r")[-1]


def test_a_log_gets_a_line_at_most_every_interval(caplog):
    with caplog.at_level(logging.INFO, logger="raysr"):
        rare = Progress(100, "log", every_s=3600.0)
        rare.add(["ok"] * 10)
        assert "progress" not in caplog.text  # not an hour yet
        steady = Progress(100, "log", every_s=0.0)
        steady.add(["ok"] * 40)
        steady.add(["error"])
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("progress: ")]
    assert len(lines) == 2 and lines[-1].startswith("progress: 41/100  ok 40  failed 1") and "ETA" in lines[-1]


def test_off_shows_nothing_and_still_counts(capsys, caplog):
    progress = Progress(3, "off", every_s=0.0)
    progress.add(["ok", "error"])
    progress.close()
    assert progress.counts == {"ok": 1, "error": 1}
    assert capsys.readouterr().err == "" and "progress" not in caplog.text


def test_unset_means_a_line_on_a_terminal_and_log_lines_elsewhere():
    assert _progress_mode(None) == "log"  # pytest's stderr is not a terminal
    assert _progress_mode(True) == "line" and _progress_mode(False) == "off"
    with pytest.raises(ValueError, match="line, log or off"):
        Progress(1, "verbose")
