"""raysr.report.summary: `raysr manifest summary` of a real manifest written by ManifestWriter."""

from __future__ import annotations

import datetime as dt

import pytest

from raysr.cli import main
from raysr.manifest import SCHEMA, ManifestWriter, new_row, read_manifest
from raysr.report.summary import COLUMNS, format_summary, read_latest_run, summarize


def _at(second: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 0, 0, second, tzinfo=dt.timezone.utc)


def test_empty_manifest():
    assert summarize(SCHEMA.empty_table()) == {"rows": 0}
    assert format_summary({"rows": 0}) == "manifest is empty"


def test_summary_counts_failures_and_slowest(tmp_path):
    root = str(tmp_path / "m")
    writer = ManifestWriter(root, "job", "r1")
    writer.append([
        new_row(item_id="a", input_uri="/a.png", status="ok", upscale_s=2.0, started_at=_at(0), finished_at=_at(4)),
        new_row(item_id="b", input_uri="/b.png", status="error", error_type="truncated",
                error_message="/b.png: cut off", started_at=_at(0), finished_at=_at(1)),
        new_row(item_id="c", input_uri="/c.png", status="skipped", started_at=_at(0), finished_at=_at(1)),
    ])
    writer.flush()
    summary = summarize(read_manifest(root, COLUMNS))
    assert (summary["ok"], summary["error"], summary["skipped"], summary["rows"]) == (1, 1, 1, 3)
    assert summary["failures"][0]["error_type"] == "truncated" and summary["failures_total"] == 1
    assert summary["slowest"] == [{"input_uri": "/a.png", "upscale_s": 2.0}]
    assert summary["items_per_s"] == pytest.approx(0.5)
    text = format_summary(summary)
    assert "/b.png: [truncated] cut off" in text and "ok 1" in text and "more" not in text


def test_failures_capped_slowest_ordered_latest_run_only(tmp_path, capsys):
    root = str(tmp_path / "m")
    earlier = ManifestWriter(root, "job", "r1")
    earlier.append([new_row(item_id="old", input_uri="/old.png", status="error", error_type="empty",
                            error_message="/old.png: empty", finished_at=_at(0))])
    earlier.flush()
    writer = ManifestWriter(root, "job", "r2")
    writer.append([new_row(item_id=f"e{n:02}", input_uri=f"/e{n:02}.png", status="error", error_type="corrupt",
                           error_message=f"/e{n:02}.png: bad", started_at=_at(1), finished_at=_at(2))
                   for n in range(30)])
    writer.append([new_row(item_id=f"k{n}", input_uri=f"/k{n}.png", status="ok", upscale_s=float(n % 7),
                           started_at=_at(1), finished_at=_at(3)) for n in range(10)])
    writer.flush()
    summary = summarize(read_manifest(root, COLUMNS), slowest=3, failures=20)
    assert summary["run_id"] == "r2" and summary["runs"] == 2 and summary["error"] == 30
    assert [f["input_uri"] for f in summary["failures"]] == [f"/e{n:02}.png" for n in range(20)]
    assert summary["failures_total"] == 30
    assert [s["upscale_s"] for s in summary["slowest"]] == [6.0, 5.0, 4.0]
    latest, runs = read_latest_run(root)
    assert runs == 2 and set(latest.column("run_id").to_pylist()) == {"r2"} and latest.num_rows == 40
    assert summarize(latest, runs=runs)["runs"] == 2
    assert main(["manifest", "summary", root]) == 0
    printed = capsys.readouterr().out
    assert "/e19.png: [corrupt] bad" in printed and "/e20.png" not in printed and "/old.png" not in printed
    assert "... and 10 more" in printed and "(2 runs in manifest)" in printed
    assert main(["manifest", "summary", str(tmp_path / "nothing")]) == 2  # a wrong path is an error, not "empty"
    assert "no manifest there" in capsys.readouterr().err
