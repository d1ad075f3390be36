"""upscale_video end to end: what the issue promises is kept, checked, and published only when verified."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import av
import numpy as np
import pytest

from raysr.video import pipeline
from raysr.video.errors import VideoError
from raysr.video.options import EncodeOptions
from raysr.video.pipeline import TEMPORAL_NOTE, upscale_video
from raysr.video.verify import VideoCheck


def _video_pts_seconds(path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(p.pts * stream.time_base for p in container.demux(stream) if p.size)


def _audio_hashes(path) -> list[str]:
    with av.open(str(path)) as container:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(audio=0) if p.size]


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_mp4_with_audio(clip, upscale2x, tmp_path):
    path = clip("in.mp4", chapters=True)
    result = upscale_video(path, tmp_path / "out.mp4", upscale2x, target_seconds=0.4, decode_check=True)
    assert result.check.ok and result.segments == 4 and result.frames == 48
    assert TEMPORAL_NOTE in result.notes
    with av.open(result.output) as container:
        video = container.streams.video[0]
        assert (video.width, video.height, video.average_rate) == (128, 96, 24)
        assert len(container.chapters()) == 2
    assert result.check.duration_out_s == pytest.approx(2.0)
    assert _video_pts_seconds(result.output) == _video_pts_seconds(path)
    assert _audio_hashes(result.output) == _audio_hashes(path) != []
    assert _leftovers(tmp_path) == []


def test_video_starting_after_the_audio_keeps_its_offset(clip, upscale2x, tmp_path):
    path = clip("late.mp4", start_s=0.5)
    result = upscale_video(path, tmp_path / "out.mp4", upscale2x, target_seconds=0.4)
    (audio,) = result.check.streams
    assert result.check.ok and result.info.start_s == pytest.approx(0.5)
    assert audio.offset_in_s == pytest.approx(-0.5, abs=0.03) and audio.offset_out_s == pytest.approx(audio.offset_in_s)
    assert _video_pts_seconds(result.output)[0] == Fraction(1, 2)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_keeps_every_timestamp(clip, upscale2x, tmp_path, name):
    path = clip(name, vfr=True)
    before = _video_pts_seconds(path)
    assert len(set(np.diff(before))) > 10  # really irregular
    result = upscale_video(path, tmp_path / f"out-{name}", upscale2x, target_seconds=0.4)
    assert result.info.is_vfr and result.check.ok
    assert _video_pts_seconds(result.output) == before  # exact, in seconds (time bases may differ)


def test_ten_bit_stays_ten_bit(clip, upscale2x, tmp_path):
    path = clip("ten.mkv", pix_fmt="yuv420p10le")
    for codec in ("libx264", "ffv1"):
        result = upscale_video(path, tmp_path / f"{codec}.mkv", upscale2x, EncodeOptions(codec=codec), target_seconds=0.4)
        assert result.join.pix_fmt == result.check.pix_fmt_out == "yuv420p10le"
        with av.open(result.output) as container:
            assert next(container.decode(video=0)).format.name == "yuv420p10le"


def test_aspect_rotation_and_colour_tags_kept(clip, upscale2x, tmp_path):
    path = clip("tagged.mp4", sar=Fraction(4, 3), color=(1, 1, 1), rotation=-90)
    result = upscale_video(path, tmp_path / "out.mp4", upscale2x, target_seconds=0.4)
    assert result.check.ok and not any("untagged" in note for note in result.notes)
    with av.open(result.output) as container:
        context = container.streams.video[0].codec_context
        assert context.sample_aspect_ratio == Fraction(4, 3)
        assert (context.color_primaries, context.color_trc, context.colorspace) == (1, 1, 1)
        assert next(container.decode(video=0)).rotation == -90


def test_with_the_raysr_engine(clip, tmp_path):
    from raysr.engine import EngineOptions, Upscaler
    from raysr.models.load import load_model

    upscaler = Upscaler(load_model("bicubic", scale=2), EngineOptions())
    path = clip("ten.mp4", pix_fmt="yuv420p10le", frames=24)
    result = upscale_video(path, tmp_path / "out.mp4", lambda rgb: upscaler.upscale(rgb).image, target_seconds=0.4)
    assert result.check.ok and (result.join.width, result.join.height) == (128, 96)


def test_threads_give_the_same_output(clip, upscale2x, tmp_path):
    path = clip("in.mkv")
    options = EncodeOptions(codec="ffv1")
    one = upscale_video(path, tmp_path / "one.mkv", upscale2x, options, target_seconds=0.4, workers=1)
    three = upscale_video(path, tmp_path / "three.mkv", upscale2x, options, target_seconds=0.4, workers=3)
    with av.open(one.output) as a, av.open(three.output) as b:
        assert all(np.array_equal(x.to_ndarray(), y.to_ndarray()) for x, y in zip(a.decode(video=0), b.decode(video=0)))
    single = upscale_video(path, tmp_path / "single.mkv", upscale2x, options, target_seconds=math.inf)
    assert single.segments == 1 and single.check.ok


def test_failed_verification_publishes_nothing(clip, upscale2x, tmp_path, monkeypatch):
    path = clip("in.mp4")
    real = pipeline.verify_video

    def failing(*args, **kwargs) -> VideoCheck:
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), problems=("output has 47 video frames, input 48",))

    monkeypatch.setattr(pipeline, "verify_video", failing)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VideoError, match="does not match the input: output has 47 video frames") as caught:
        upscale_video(path, out / "result.mp4", upscale2x)
    assert caught.value.kind == "verify_failed"
    assert list(out.iterdir()) == []


def test_unknown_extension_and_bad_workers(clip, upscale2x, tmp_path):
    path = clip("in.mp4")
    with pytest.raises(VideoError, match="unknown video extension '.xyz'") as caught:
        upscale_video(path, tmp_path / "out.xyz", upscale2x)
    assert caught.value.kind == "join_failed" and not (tmp_path / "out.xyz").exists()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        upscale_video(path, tmp_path / "out.mp4", upscale2x, workers=0)


def test_output_folder_is_created(clip, upscale2x, tmp_path):
    from raysr.video import upscale_video

    target = tmp_path / "new" / "deeper" / "out.mp4"
    result = upscale_video(clip(), target, upscale2x)
    assert target.is_file() and result.frames == 48


def test_an_old_cameras_mjpeg_avi_with_pcm_sound(clip, upscale2x, tmp_path):
    """MJPEG + PCM in AVI (2000s digital cameras): frames, their times and the sound carry over
    into Matroska (`raysr` writes AVI inputs as .mkv: raysr/sources/listing.py)."""
    path = clip("MVI_0001.avi", frames=24, fps=12, gop=1, codec="mjpeg", pix_fmt="yuvj420p", audio="pcm_s16le")
    result = upscale_video(path, tmp_path / "MVI_0001.mkv", upscale2x, target_seconds=0.5)
    assert result.check.ok and result.frames == 24
    shown, stored = _video_pts_seconds(result.output), _video_pts_seconds(path)
    assert len(shown) == len(stored) == 24
    assert all(abs(out - into) <= Fraction(1, 1000) for out, into in zip(shown, stored))  # Matroska keeps ms
    assert _audio_hashes(result.output) == _audio_hashes(path) != []


def test_h264_with_b_frames_in_avi_says_its_timestamps_are_lost(clip, upscale2x, tmp_path):
    """AVI stores no presentation times, so reordered H.264 frames decode out of order; the
    segment muxer used to refuse them with a bare "Invalid argument" blamed on the encoder."""
    path = clip("h264.avi", frames=24, fps=12, gop=12, audio=None)
    with pytest.raises(VideoError) as caught:
        upscale_video(path, tmp_path / "h264.mkv", upscale2x)
    assert caught.value.kind == "bad_timestamps"
    assert str(path) in str(caught.value) and "remux it into .mkv or .mp4" in str(caught.value)
    assert not (tmp_path / "h264.mkv").exists()


def test_an_avchd_camcorders_mts_stays_mpeg_ts(clip, upscale2x, tmp_path):
    """MPEG-TS in, MPEG-TS out: its ADTS-framed AAC is copied bit for bit (Matroska would
    rewrap it, and the verification would rightly refuse the changed packets)."""
    path = clip("00001.MTS", frames=24, fps=12, gop=12, audio="aac")
    result = upscale_video(path, tmp_path / "00001.mts", upscale2x, target_seconds=0.5)
    assert result.check.ok and result.frames == 24
    assert _video_pts_seconds(result.output) == _video_pts_seconds(path)
    assert _audio_hashes(result.output) == _audio_hashes(path) != []


@pytest.mark.parametrize("name, codec", [("VTS_01_1.vob", "mpeg2video"), ("clip.mpg", "mpeg2video"),
                                         ("clip.wmv", "wmv2"), ("phone.3gp", "mpeg4")])
def test_containers_raysr_reads_but_does_not_write_go_to_mkv(clip, upscale2x, tmp_path, name, codec):
    path = clip(name, frames=24, fps=12, gop=12, codec=codec, audio=None)
    result = upscale_video(path, tmp_path / "out.mkv", upscale2x, target_seconds=0.5)
    assert result.check.ok and result.frames == 24 and result.segments == 2
