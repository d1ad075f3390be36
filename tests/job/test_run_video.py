"""Videos in a job: frames through the route's actor pool, audio copied bit for bit, resumable."""

import hashlib

import av
import cv2
import numpy as np
import pytest

from clips import write_clip
from factories import compact_state
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import latest_rows, read_manifest


def _audio_hashes(path) -> list[str]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [hashlib.sha256(bytes(packet)).hexdigest() for packet in container.demux(stream) if packet.size]


def test_videos_and_images_in_one_job(ray_cluster, tmp_path, photo):
    root = tmp_path / "in"
    root.mkdir()
    write_clip(root / "film.mp4", frames=36, size=(48, 32), fps=24, gop=12, audio="aac")
    cv2.imwrite(str(root / "still.png"), photo[:40, :40])
    (root / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    spec = parse_spec({"name": "video", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": "bicubic", "allow_errors": True,
                       "video": {"codec": "libx264", "crf": 18, "preset": "ultrafast", "segment_seconds": 0.5}})
    report = run_job(spec, progress=False)
    assert report.counts["error"] == 1 and report.counts["ok"] + report.counts["flagged"] == 2
    rows = {row["input_uri"].rsplit("/", 1)[-1]: row for row in latest_rows(read_manifest(spec.manifest_uri)).to_pylist()}
    film = rows["film.mp4"]
    assert film["kind"] == "video" and film["status"] == "ok"
    assert film["frames_in"] == film["frames_out"] == 36 and film["segments"] >= 2
    assert abs(film["fps"] - 24) < 1e-6 and abs(film["duration_s"] - 1.5) < 0.05
    assert rows["broken.mkv"]["status"] == "error" and rows["broken.mkv"]["error_type"]
    assert rows["still.png"]["kind"] == "image"

    output = tmp_path / "out" / "film.mp4"
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 128)
        assert sum(1 for _ in container.decode(stream)) == 36
    assert _audio_hashes(output) == _audio_hashes(root / "film.mp4")

    again = run_job(spec, progress=False)
    assert again.counts["skipped"] == 2


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]


def _reference(source, tmp_path, segment_seconds):
    """The same video through the one-machine path: what the segment-parallel job must equal."""
    from raysr.engine import EngineOptions, Upscaler
    from raysr.models.load import load_model
    from raysr.video import EncodeOptions, upscale_video

    upscaler = Upscaler(load_model("bicubic"), EngineOptions())
    output = tmp_path / "reference.mkv"
    upscale_video(source, output, lambda rgb: upscaler.upscale(rgb).image, EncodeOptions(codec="ffv1"),
                  target_seconds=segment_seconds)
    return _frames(output)


def _film_spec(root, tmp_path, actors=2):
    return parse_spec({"name": "film", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": "bicubic", "resources": {"actors_per_model": actors},
                       "video": {"codec": "ffv1", "segment_seconds": 0.25}})


def test_segment_parallel_output_equals_the_sequential_path(ray_cluster, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    write_clip(root / "film.mkv", frames=48, size=(40, 24), fps=24, gop=6, audio="aac")
    spec = _film_spec(root, tmp_path)
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 1 and not report.missing

    table = read_manifest(spec.manifest_uri)
    segment_rows = [row for row in table.to_pylist() if row["segment_index"] is not None]
    film = latest_rows(table).to_pylist()[0]
    assert film["segments"] == len(segment_rows) == 8 and film["frames_out"] == 48
    assert sorted(row["segment_index"] for row in segment_rows) == list(range(8))
    assert sum(row["frames_out"] for row in segment_rows) == 48
    output = tmp_path / "out" / "film.mkv"
    assert all(np.array_equal(got, want) for got, want in zip(_frames(output), _reference(root / "film.mkv", tmp_path, 0.25), strict=True))
    assert _audio_hashes(output) == _audio_hashes(root / "film.mkv")
    assert not any((tmp_path / "out" / "_raysr" / "segments").glob("*")), "the segment store is dropped after the join"


def test_one_films_segments_spread_over_the_actors(ray_cluster, tmp_path, monkeypatch, save_state):
    import ray.data

    # Let both actors start before work is handed out, so the test sees how the work is split,
    # not which actor happened to start first.
    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 120)
    root = tmp_path / "in"
    root.mkdir()
    write_clip(root / "film.mkv", frames=48, size=(128, 96), fps=24, gop=6, audio=None)
    # Segments arrive at the pool one read task (~50 ms) apart, and an idle pool hands each to the
    # same actor: a segment must take longer than that for the actors to overlap. ~7 GMAC a frame,
    # six frames a segment in FP32: tenths of a second on 2 cores. (At ~1/6 of that, 1 run in 3 failed.)
    model = str(save_state(compact_state(num_conv=16, num_feat=64)))
    spec = parse_spec({"name": "film", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": model, "engine": {"precision": "fp32"}, "resources": {"actors_per_model": 2},
                       "video": {"codec": "ffv1", "segment_seconds": 0.25}})
    run_job(spec, progress=False)
    segment_rows = [row for row in read_manifest(spec.manifest_uri).to_pylist() if row["segment_index"] is not None]
    assert len(segment_rows) == 8 and all(row["status"] == "ok" for row in segment_rows)
    assert len({row["actor_id"] for row in segment_rows}) == 2, "both actors encode segments of the one film"


class _DriverKilled(BaseException):
    """Stands in for the driver dying after the actors encoded every segment, before the join."""


def test_a_rerun_encodes_only_the_segments_that_are_missing(ray_cluster, tmp_path, monkeypatch):
    import raysr.video.pipeline

    root = tmp_path / "in"
    root.mkdir()
    write_clip(root / "film.mkv", frames=36, size=(40, 24), fps=24, gop=6, audio="aac")
    spec = _film_spec(root, tmp_path, actors=1)

    def killed(*args, **kwargs):
        raise _DriverKilled

    with monkeypatch.context() as patch:
        patch.setattr(raysr.video.pipeline, "finish_video", killed)
        with pytest.raises(_DriverKilled):
            run_job(spec, progress=False)
    stores = list((tmp_path / "out" / "_raysr" / "segments").iterdir())
    assert len(stores) == 1 and len(list(stores[0].glob("*.nut"))) == 6
    for leftover in stores[0].glob("00002.*"):  # as if segment 2 had not finished
        leftover.unlink()

    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 1
    rerun = read_manifest(spec.manifest_uri).to_pylist()
    latest_run = max(rerun, key=lambda row: row["finished_at"])["run_id"]
    redone = [row["segment_index"] for row in rerun if row["run_id"] == latest_run and row["segment_index"] is not None]
    assert redone == [2]
    assert all(np.array_equal(got, want) for got, want in
               zip(_frames(tmp_path / "out" / "film.mkv"), _reference(root / "film.mkv", tmp_path, 0.25), strict=True))


def _write_portrait_clip(path, frames: int, fps: int = 8, gop: int = 4) -> None:
    """A clip of scikit-image's astronaut (a real face) drifting a pixel per frame."""
    from skimage import data

    portrait = cv2.resize(data.astronaut()[:320, 96:416], (160, 160), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        stream.options = {"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0", "preset": "ultrafast"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(portrait[16:144, 16 + index:144 + index]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def test_a_video_with_faces_restores_them_frame_by_frame_in_the_route_actor(ray_cluster, tmp_path, save_state):
    import json

    import torch

    from factories import random_gfpgan_state

    root = tmp_path / "in"
    root.mkdir()
    _write_portrait_clip(root / "family.mp4", frames=4)
    face_model = tmp_path / "GFPGAN-random.pth"
    torch.save({"params_ema": random_gfpgan_state()}, face_model)
    spec = parse_spec({"name": "video-faces", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                       "model": "bicubic", "engine": {"precision": "fp32"},
                       "faces": {"model": str(face_model), "min_face_px": 16, "identity_threshold": None},
                       "video": {"codec": "ffv1", "segment_seconds": 0.5}})
    report = run_job(spec, progress=False)
    assert report.counts["ok"] + report.counts["flagged"] == 1, report
    rows = read_manifest(spec.manifest_uri).to_pylist()
    film = next(row for row in rows if row["segment_index"] is None)
    segments = [row for row in rows if row["segment_index"] is not None]
    assert film["route"] == "faces" and "face(s) found" in film["route_reason"]
    assert film["face_model"] == str(face_model) and len(segments) >= 1
    summary = json.loads(film["faces"])
    assert summary["frames"] == 4 and summary["frames_with_faces"] >= 3 and summary["tracks"] >= 1
    assert film["face_count"] == summary.get("restored", 0) + summary.get("blended", 0) >= 3
    assert sum(row["face_count"] for row in segments) == film["face_count"]
    def frames_of(path):
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]

    restored, source = frames_of(tmp_path / "out" / "family.mp4"), frames_of(root / "family.mp4")
    assert len(restored) == 4 and restored[0].shape == (512, 512, 3)
    background = cv2.resize(source[0].astype(np.uint8), (512, 512), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    # the face (random-init restorer) differs from the background model's frame, the rest does not
    assert np.abs(restored[0] - background)[180:330, 180:330].mean() > 8 * np.abs(restored[0] - background)[:48, :48].mean()
