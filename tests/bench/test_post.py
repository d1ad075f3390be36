"""The CI smoke version of `raysr bench post`: a small photo, one repeat. A benchmark, not a
timed test: only the report's fields and their arithmetic are checked."""

from __future__ import annotations

import json

import pytest

from raysr.bench import bench_post
from raysr.cli import main


def test_smoke_post_reports_each_stage_and_the_cores_a_model_rate_needs():
    report = bench_post(size=32, repeats=1, model_images_per_s=20.0)
    assert report["output"] == "128x128" and report["threads"] == 1
    stages = [report[f"{name}_ms"] for name in ("decode", "color", "metrics", "write")]
    assert all(ms > 0 for ms in stages)
    assert report["total_ms"] == pytest.approx(sum(stages), abs=0.2)
    assert report["items_per_s_per_core"] == pytest.approx(1000 / report["total_ms"], rel=0.01)
    assert report["cores_for_model_rate"] == pytest.approx(20.0 * report["total_ms"] / 1000, abs=0.06)
    json.dumps(report)


def test_a_failing_stage_is_reported_not_timed():
    with pytest.raises(RuntimeError, match="color stage failed"):
        bench_post(size=32, repeats=1, color="sepia")


def test_cli_bench_post_writes_json(tmp_path, capsys):
    out = tmp_path / "post.json"
    assert main(["bench", "post", "--size", "24", "--repeats", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["input"] == "24x24"
    assert "total_ms" in capsys.readouterr().out
