"""The CI smoke version of `raysr bench scaling`: a tiny random RRDBNet, four tiny images, on
the session's two-node cluster (one declared GPU per node, so one actor per GPU). A benchmark,
not a timed test: only the report's shape and its bookkeeping are checked."""

from __future__ import annotations

import json

import pytest

from factories import rrdbnet_state
from raysr.bench import bench_scaling


@pytest.fixture
def tiny_model(save_state):
    return save_state(rrdbnet_state(num_blocks=1, num_feat=8), "tiny_rrdb_x4.pth")


def test_smoke_scaling_on_a_cluster_with_two_gpus(ray_cluster, tiny_model):
    report = bench_scaling(str(tiny_model), images=4, size=32, address=ray_cluster.address)
    assert report["actors"] == 2 and report["per_actor"] == {"gpus_per_actor": 1}  # one actor per declared GPU
    one, many = report["one_actor"], report["many_actors"]
    assert one["actors"] == 1 and sum(one["images_per_actor"]) == 4
    # Both runs did every image; the second may use one or both actors (tiny images finish fast).
    assert 1 <= many["actors"] <= 2 and sum(many["images_per_actor"]) == 4
    for run in (one, many):
        assert run["images_per_s"] > 0 and run["steady_images_per_s"] > 0
        assert 0 < run["first_model_call_s"] < run["seconds"]
    assert report["scaling_efficiency"] == pytest.approx(many["images_per_s"] / (2 * one["images_per_s"]), rel=0.01)
    json.dumps(report)


def test_scaling_needs_two_actors_and_an_image_each(tiny_model):
    with pytest.raises(ValueError, match="actors >= 2"):
        bench_scaling(str(tiny_model), actors=1)
    with pytest.raises(ValueError, match="images >= actors"):
        bench_scaling(str(tiny_model), actors=4, images=2)
