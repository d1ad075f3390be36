"""The Ray Data job end to end on a simulated two-node cluster (real Ray, real files)."""

import cv2
import numpy as np
import pytest

from factories import compact_state
from raysr.imageops.metrics import psnr
from raysr.job.actors import PlanError
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_rows, read_manifest


def _png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), bgr)


@pytest.fixture
def mixed_inputs(tmp_path, photo):
    root = tmp_path / "in"
    _png(root / "photos" / "a.png", photo[:48, :64])
    _png(root / "photos" / "b.png", photo[200:240, 300:330])
    _png(root / "gray.png", cv2.cvtColor(photo[:32, :32], cv2.COLOR_RGB2GRAY))
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("hello")
    (root / "small.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    truncated = cv2.imencode(".png", photo[:64, :64])[1].tobytes()
    (root / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    return root


def _spec(inputs, output, model, **extra):
    return parse_spec({"name": "test", "inputs": [str(inputs)], "output": {"path": str(output)},
                       "model": model, "allow_errors": True, **extra})


def _latest(spec):
    return {row["input_uri"].rsplit("/", 1)[-1]: row for row in latest_rows(read_manifest(spec.manifest_uri)).to_pylist()}


def test_mixed_folder_one_row_per_file_then_resume_skips(ray_cluster, tmp_path, mixed_inputs, save_state):
    model = str(save_state(compact_state()))
    spec = _spec(mixed_inputs, tmp_path / "out", model, engine={"precision": "fp32"})
    spec = spec.model_copy(update={"output": spec.output.model_copy(update={"report": True})})
    report = run_job(spec, progress=False)
    assert report.listed == 7 and not report.missing
    assert report.report_uri == str(tmp_path / "out" / "_raysr" / "report.html") and report.report_uri in report.line()
    page = (tmp_path / "out" / "_raysr" / "report.html").read_text()
    assert 'data-count="error"><b>4</b>' in page and "truncated.png" in page
    assert report.counts["ok"] + report.counts["flagged"] == 3 and report.counts["error"] == 4
    rows = _latest(spec)
    assert {name: rows[name]["error_type"] for name in ("zero.png", "text.png", "small.png", "truncated.png")} == {
        "zero.png": "empty", "text.png": "not_an_image", "small.png": "too_small", "truncated.png": "truncated"}
    assert all(rows[name]["error_message"] for name in ("zero.png", "text.png"))
    ok = rows["a.png"]
    assert ok["output_width"] == 256 and ok["output_height"] == 192 and ok["precision"] == "fp32"
    assert ok["weights_sha256"] and ok["model_arch"] == "Compact" and ok["node_id"] and ok["actor_id"]
    assert (tmp_path / "out" / "photos" / "a.png").stat().st_size == ok["output_size"]
    assert cv2.imread(str(tmp_path / "out" / "gray.png"), cv2.IMREAD_UNCHANGED).ndim == 2

    second = run_job(spec, progress=False)
    assert second.counts["skipped"] == 3 and second.counts["error"] == 4
    page = (tmp_path / "out" / "_raysr" / "report.html").read_text()  # rewritten: both runs, one state
    assert "Runs (2, newest first)" in page and 'data-count="skipped"><b>0</b>' in page
    table = read_manifest(spec.manifest_uri)
    assert table.num_rows == 14  # one row per item per run

    # A changed input is reprocessed; an output deleted behind raysr's back is redone.
    _png(mixed_inputs / "photos" / "b.png", np.zeros((40, 30, 3), np.uint8) + 90)
    (tmp_path / "out" / "gray.png").unlink()
    third = run_job(spec, progress=False)
    assert third.counts["skipped"] == 1 and third.counts["ok"] + third.counts["flagged"] == 2


def test_force_and_retry_failed(ray_cluster, tmp_path, mixed_inputs):
    spec = _spec(mixed_inputs, tmp_path / "out", "bicubic")
    run_job(spec, progress=False)
    forced = run_job(spec.model_copy(update={"force": True}), progress=False)
    assert forced.counts["skipped"] == 0 and forced.counts["ok"] + forced.counts["flagged"] == 3
    retry = run_job(spec.model_copy(update={"retry_failed_only": True}), progress=False)
    assert retry.counts["skipped"] == 3 and retry.counts["error"] == 4
    assert retry.exit_code == 0  # allow_errors
    assert run_job(spec.model_copy(update={"allow_errors": False, "force": True}), progress=False).exit_code == 1


def test_outputs_are_never_swapped_between_items(ray_cluster, tmp_path, photo):
    rng = np.random.default_rng(7)
    root = tmp_path / "in"
    sizes = {}
    for index in range(12):
        height, width = int(rng.integers(16, 60)), int(rng.integers(16, 60))
        top, left = int(rng.integers(0, 400)), int(rng.integers(0, 400))
        _png(root / f"img{index:02d}.png", photo[top: top + height, left: left + width])
        sizes[f"img{index:02d}.png"] = (height, width)
    spec = _spec(root, tmp_path / "out", "bicubic", resources={"actors_per_model": 2})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 12
    for name, (height, width) in sizes.items():
        source = cv2.imread(str(root / name))
        output = cv2.imread(str(tmp_path / "out" / name))
        assert output.shape[:2] == (height * 4, width * 4)
        down = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA)
        assert psnr(down, source) > 28, name


def test_routes_run_on_their_own_actor_pools_across_both_nodes(ray_cluster, tmp_path, photo, save_state):
    root = tmp_path / "in"
    for index in range(4):
        _png(root / "photos" / f"p{index}.png", photo[index * 60: index * 60 + 40, 100:140])
        _png(root / "drawings" / f"d{index}.png", np.full((40, 40, 3), 200, np.uint8))
    anime_model = str(save_state(compact_state(seed=3), name="anime.pth"))
    spec = _spec(root, tmp_path / "out", "bicubic",
                 routes={"anime": {"model": anime_model}},
                 route_overrides=[{"glob": "drawings/*", "route": "anime"}])
    run_job(spec, progress=False)
    rows = latest_rows(read_manifest(spec.manifest_uri)).to_pylist()
    by_route = {route: [row for row in rows if row["route"] == route] for route in ("photo", "anime")}
    assert len(by_route["anime"]) == 4 and all("drawings/" in row["input_uri"] for row in by_route["anime"])
    assert all(row["route_reason"] == "path matches 'drawings/*'" for row in by_route["anime"])
    photo_actors = {row["actor_id"] for row in by_route["photo"]}
    anime_actors = {row["actor_id"] for row in by_route["anime"]}
    assert photo_actors.isdisjoint(anime_actors), "each actor holds exactly one model"
    assert {row["model_arch"] for row in by_route["photo"]} == {"classical"}
    assert {row["model_arch"] for row in by_route["anime"]} == {"Compact"}
    # One GPU per node and one GPU per actor: the two pools must sit on different nodes.
    assert len({row["node_id"] for row in rows}) == 2


def test_a_gpu_pool_grows_onto_a_gpu_that_joined_after_the_plan(ray_cluster, tmp_path, photo, save_state, monkeypatch,
                                                                caplog):
    """An autoscaling cluster adds GPU nodes while a job runs. The planner here sees one GPU
    (as at the start of such a job) while the session cluster has two: the pool starts with
    one actor and Ray Data adds a second once that one is busy and a GPU is free."""
    import logging

    from raysr.job import actors

    planned = actors.actor_layout
    monkeypatch.setattr(actors, "actor_layout", lambda spec, items, resources: planned(
        spec, items, {**resources, "GPU": resources["GPU"] - 1}))
    root = tmp_path / "in"
    for index in range(32):
        _png(root / f"p{index:02d}.png", photo[index * 12: index * 12 + 112, index * 12: index * 12 + 112])
    # Slow enough per item (~0.4 s on one thread) that work queues while the second actor starts
    # (~5 s here); it takes about a quarter of the items.
    model = str(save_state(compact_state(num_conv=32, num_feat=64)))
    spec = _spec(root, tmp_path / "out", model, engine={"precision": "fp32"}, stages={"metrics": False},
                 route_overrides=[{"glob": "*", "route": "photo"}])  # one pool: content routing aside
    with caplog.at_level(logging.INFO, logger="raysr"):
        report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 32
    assert "photo 1 per pool (up to 32 as the cluster grows)" in caplog.text
    rows = latest_rows(read_manifest(spec.manifest_uri)).to_pylist()
    assert len({row["actor_id"] for row in rows}) == 2


def test_actor_resources_keep_the_model_actors_on_the_nodes_that_declare_them(ray_cluster, tmp_path, photo):
    root = tmp_path / "in"
    for index in range(3):
        _png(root / f"p{index}.png", photo[index * 50: index * 50 + 32, :32])
    # Only the worker node declares the custom resource "worker" (tests/conftest.py).
    spec = _spec(root, tmp_path / "out", "bicubic",
                 resources={"gpus_per_actor": 0, "cpus_per_actor": 1, "actor_resources": {"worker": 1}})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 3
    nodes = {row["node_id"] for row in latest_rows(read_manifest(spec.manifest_uri)).to_pylist()}
    assert len(nodes) == 1 and ray_cluster.head_node.node_id not in nodes


def test_dry_run_processes_nothing(ray_cluster, tmp_path, mixed_inputs):
    spec = _spec(mixed_inputs, tmp_path / "out", "bicubic")
    report = run_job(spec, dry_run=True, progress=False)
    assert report.counts == {"process": 3, "error": 4}
    assert not (tmp_path / "out" / "photos").exists()
    # What the run would start, from the session cluster's two GPUs (the pending items' routes).
    assert "per pool" in report.actors and report.actors.endswith("; 1 GPU(s) and 1 CPU(s) each")


def test_actors_no_node_can_hold_fail_the_run_instead_of_waiting_for_ever(ray_cluster, tmp_path, mixed_inputs):
    """4 CPUs per actor pass the cluster's total (6) but fit neither 3-CPU node: Ray would keep
    the actors pending as long as the job ran, with no item done."""
    resources = {"cpus_per_actor": 4, "actors_per_model": 1, "wait_for_node_s": 1}
    spec = _spec(mixed_inputs, tmp_path / "out", "bicubic", resources=resources)
    dry = run_job(spec, dry_run=True, progress=False)
    assert dry.actors.endswith("; no node of the cluster can hold a model actor (4 CPU, 1 GPU): "
                               "its nodes have 3 CPU, 1 GPU (yet)")
    with pytest.raises(PlanError, match=r"\(4 CPU, 1 GPU\): its nodes have 3 CPU, 1 GPU, and none joined in 1 s"):
        run_job(spec, progress=False)


def test_a_row_removed_behind_raysrs_back_is_redone(ray_cluster, tmp_path, photo):
    root = tmp_path / "in"
    _png(root / "a.png", photo[:32, :32])
    _png(root / "b.png", photo[64:96, 64:96])
    spec = _spec(root, tmp_path / "out", "bicubic")
    first = run_job(spec, progress=False)
    assert first.counts["ok"] + first.counts["flagged"] == 2
    for part in (tmp_path / "out" / "_raysr" / "manifest").rglob("*.parquet"):
        part.unlink()  # the record of the first run is gone
    again = run_job(spec, progress=False)
    assert again.counts["skipped"] == 0 and again.counts["ok"] + again.counts["flagged"] == 2


def test_an_ensemble_route_blends_members_from_their_own_pools(ray_cluster, tmp_path, photo, save_state):
    root = tmp_path / "in"
    for index in range(3):
        _png(root / f"p{index}.png", photo[index * 50: index * 50 + 32, 100:140])
    main = str(save_state(compact_state(seed=1), name="main.pth"))
    spec = _spec(root, tmp_path / "out", main, engine={"precision": "fp32"}, stages={"color": "none"},
                 routes={"photo": {"model": main, "ensemble": [{"model": "bicubic", "weight": 0.4}]}},
                 route_overrides=[{"glob": "*", "route": "photo"}])
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 3
    import json

    from raysr.engine import EngineOptions, Upscaler
    from raysr.models.load import load_model
    from raysr.stages.ensemble import blend

    rows = _latest(spec)
    parts = json.loads(rows["p0.png"]["ensemble"])
    assert [(part["model"], part["weight"]) for part in parts] == [(main, 0.6), ("bicubic", 0.4)]
    assert parts[0]["weights_sha256"] == rows["p0.png"]["weights_sha256"]
    source = cv2.cvtColor(cv2.imread(str(root / "p0.png")), cv2.COLOR_BGR2RGB)
    options = EngineOptions(precision="fp32")
    expected = blend([Upscaler(load_model(main), options).upscale(source).image,
                      Upscaler(load_model("bicubic"), options).upscale(source).image], [0.6, 0.4])
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "p0.png")), cv2.COLOR_BGR2RGB)
    assert psnr(written, expected) > 50
    again = run_job(spec, progress=False)
    assert again.counts["skipped"] == 3


def test_photos_with_faces_take_the_faces_route_and_restore_in_their_own_pool(ray_cluster, tmp_path, save_state):
    import json

    import torch
    from skimage import data

    from factories import random_gfpgan_state

    root = tmp_path / "in"
    _png(root / "portrait.png", cv2.resize(data.astronaut()[:320, 96:416], (160, 160), interpolation=cv2.INTER_AREA))
    _png(root / "cup.png", cv2.resize(data.coffee(), (150, 100), interpolation=cv2.INTER_AREA))
    face_model = tmp_path / "GFPGAN-random.pth"
    torch.save({"params_ema": random_gfpgan_state()}, face_model)
    spec = _spec(root, tmp_path / "out", "bicubic", engine={"precision": "fp32"},
                 faces={"model": str(face_model), "min_face_px": 16})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 2, report
    rows = _latest(spec)
    portrait, cup = rows["portrait.png"], rows["cup.png"]
    assert portrait["route"] == "faces" and "face(s) found" in portrait["route_reason"]
    assert cup["route"] == "photo" and cup["face_count"] is None and cup["face_model"] is None
    assert portrait["face_model"] == str(face_model) and portrait["face_count"] >= 1
    records = json.loads(portrait["faces"])
    assert records[0]["action"] in ("restored", "blended") and len(records[0]["box"]) == 4
    assert portrait["faces_s"] > 0 and portrait["model"] == "bicubic"
    written = cv2.imread(str(tmp_path / "out" / "portrait.png"))
    assert written.shape == (640, 640, 3)


def test_a_diffusion_route_runs_sd_x4_from_the_weights_cache(ray_cluster, tmp_path, photo):
    from factories import tiny_diffusion_pipeline
    from raysr.cli import main
    from raysr.weights.hub import resolve_snapshot

    name = "stabilityai/stable-diffusion-x4-upscaler"
    folder, weights = tmp_path / "tiny-sd-x4", tmp_path / "weights"
    tiny_diffusion_pipeline().save_pretrained(folder)
    assert main(["weights", "fetch", name, "--source", str(folder), "--weights-dir", str(weights)]) == 0
    root = tmp_path / "in"
    _png(root / "a.png", photo[100:124, 200:232])
    spec = _spec(root, tmp_path / "out", name, weights_dir=str(weights),
                 diffusion={"steps": 2, "guidance_scale": 1.0, "seed": 7})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 1, report
    row = _latest(spec)["a.png"]
    assert row["model_arch"] == "diffusers" and row["color_method"] == "wavelet"
    assert row["weights_sha256"] == resolve_snapshot(name, weights).sha256
    assert (row["output_width"], row["output_height"]) == (128, 96) and row["tile_overlap"] == 32
    assert run_job(spec, progress=False).counts["skipped"] == 1

