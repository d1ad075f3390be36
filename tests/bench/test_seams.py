"""raysr.bench.seams: tiled vs untiled output per tile context (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from factories import compact_state
from raysr.bench.seams import bench_seams
from raysr.cli import main


@pytest.fixture(scope="module")
def compact_model(tmp_path_factory):
    import torch

    path = tmp_path_factory.mktemp("seams") / "compact.pth"
    torch.save(compact_state(num_conv=2, num_feat=8), path)
    return path


def test_context_wider_than_the_receptive_field_removes_the_seams(compact_model):
    # Four 3×3 convolutions see 4 px each side: no context leaves seams, 16 px none.
    report = bench_seams(str(compact_model), size=64, tile=16, precision="fp32", settings=((0, 0), (16, 16)))
    assert report["pad0_overlap0_max_diff"] > 1 and report["pad0_overlap0_psnr_db"] < 60
    assert report["pad16_overlap16_max_diff"] <= 1 and report["pad16_overlap16_psnr_db"] > 60
    assert report["pad16_overlap16_windows"] == "4 x 52x52"  # (64 + 8 cross-fade + 2 × 16 context) / 2


def test_cli_bench_seams_writes_json(compact_model, tmp_path, capsys):
    out = tmp_path / "seams.json"
    code = main(["bench", "seams", "--model", str(compact_model), "--size", "48", "--tile", "16",
                 "--precision", "fp32", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["input"] == "48x48" and report["precision"] == "fp32"
    assert {f"pad{pad}_overlap{overlap}_psnr_db" for pad, overlap in ((10, 0), (16, 16), (24, 16), (32, 16))} <= set(report)
    assert "pad24_overlap16_max_diff" in capsys.readouterr().out
