"""probe_video / plan_segments: what the file holds, keyframe cuts, and every bad input's kind."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from raysr.video.errors import VideoError
from raysr.video.probe import frame_near, plan_segments, probe_video


def test_probe_reads_the_clip(clip):
    info = probe_video(clip("a.mp4", chapters=True, rotation=90))
    assert (info.codec, info.width, info.height, info.pix_fmt, info.bit_depth) == ("h264", 64, 48, "yuv420p", 8)
    assert (info.frame_count, info.keyframes, info.average_rate) == (48, 4, 24)
    assert info.duration_s == pytest.approx(2.0)
    assert not info.is_vfr and info.rotation == 90 and info.display_matrix is not None
    assert info.chapters == 2 and info.skipped_leading_frames == 0
    audio = [s for s in info.streams if s.type == "audio"]
    assert len(audio) == 1 and audio[0].codec == "aac" and audio[0].packets > 0


def test_probe_vfr_and_tags(clip):
    info = probe_video(clip("v.mp4", vfr=True, sar=Fraction(4, 3), color=(1, 1, 1), pix_fmt="yuv420p10le"))
    assert info.is_vfr and info.time_base == Fraction(1, 90000)
    assert info.sample_aspect_ratio == Fraction(4, 3)
    assert (info.color.color_primaries, info.color.color_trc, info.color.colorspace) == (1, 1, 1)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p10le", 10)


def test_segments_start_at_keyframes_and_cover_every_frame(clip):
    path = clip("a.mp4")
    segments = plan_segments(path, target_seconds=0.4)
    assert [s.frame_count for s in segments] == [12, 12, 12, 12]
    assert [s.index for s in segments] == [0, 1, 2, 3]
    with av.open(str(path)) as container:
        keyframes = {p.pts for p in container.demux(video=0) if p.size and p.is_keyframe}
    assert {s.start_pts for s in segments} <= keyframes
    assert all(a.end_pts == b.start_pts for a, b in zip(segments, segments[1:]))
    assert segments[-1].end_pts is None and segments[-1].end_s == pytest.approx(2.0)
    assert segments[1].start_s == pytest.approx(0.5)


def test_segment_length_follows_target(clip):
    path = clip("a.mp4")
    assert [s.frame_count for s in plan_segments(path, 1.0)] == [24, 24]
    assert [s.frame_count for s in plan_segments(path, 0.9)] == [24, 24]   # the next keyframe after 0.9 s
    assert [s.frame_count for s in plan_segments(path, math.inf)] == [48]


def test_target_must_be_positive(clip):
    with pytest.raises(ValueError, match="target_seconds must be > 0"):
        plan_segments(clip(), 0)


# -- bad inputs ---------------------------------------------------------------------------
def _kind(path) -> str:
    with pytest.raises(VideoError) as caught:
        probe_video(path)
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    return caught.value.kind


def test_missing_and_empty(tmp_path):
    assert _kind(tmp_path / "nope.mp4") == "not_found"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _kind(tmp_path / "empty.mp4") == "empty"


def test_not_a_video(tmp_path):
    (tmp_path / "page.mp4").write_bytes(b"<html><body>Not found</body></html>")
    (tmp_path / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(4096))
    assert _kind(tmp_path / "page.mp4") == "corrupt"
    assert _kind(tmp_path / "noise.mkv") == "corrupt"


@pytest.mark.parametrize(("name", "keep"), [("a.mp4", 0.5), ("a.mp4", 0.99), ("a.mkv", 0.5)])
def test_truncated(clip, name, keep):
    path = clip(name)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert _kind(path) == "truncated"


def _one_audio_frame(out) -> None:
    stream = out.add_stream("aac", rate=48000)
    frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
    frame.sample_rate, frame.pts = 48000, 0
    for packet in [*stream.encode(frame), *stream.encode(None)]:
        out.mux(packet)


def test_no_video_stream(tmp_path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w") as out:
        _one_audio_frame(out)
    assert _kind(path) == "no_video_stream"


def test_zero_frames(tmp_path):
    path = tmp_path / "zero.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 48
        _one_audio_frame(out)
    assert _kind(path) == "zero_frames"


def _frame_index(rgb: np.ndarray, count: int) -> tuple[int, float]:
    """Which frame of ``clips.pattern`` ``rgb`` shows (nearest by mean error), and how clearly:
    the second-best error over the best."""
    from clips import pattern

    height, width = rgb.shape[:2]
    errors = np.array([np.abs(rgb.astype(int) - pattern(index, width, height)).mean() for index in range(count)])
    best, second = np.sort(errors)[:2]
    return int(np.argmin(errors)), float(second / best)


def test_frame_near_finds_the_same_moment_in_input_and_upscaled_output(clip, upscale2x, tmp_path):
    from raysr.video import upscale_video

    source = clip("in.mp4", frames=48, fps=24, gop=12, audio=None)
    target = tmp_path / "out.mp4"
    upscale_video(source, target, upscale2x)
    for asked, expected in ((None, 24), (0.0, 0), (0.51, 12), (1.49, 36), (60.0, 47)):
        before, shown_s = frame_near(str(source), asked)
        index, clarity = _frame_index(before, 48)
        assert (index, shown_s) == (expected, expected / 24) and clarity > 1.5
        after, after_s = frame_near(str(target), shown_s)  # same time in the upscaled copy
        assert after.shape == (96, 128, 3) and after_s == shown_s
        assert _frame_index(after[::2, ::2], 48)[0] == expected


@pytest.mark.parametrize("rotation, corner", [(-90, (0, -1)), (90, (-1, 0)), (180, (-1, -1)), (0, (0, 0))])
def test_frame_near_upright_turns_the_frame_as_a_player_shows_it(clip, rotation, corner):
    # -90 is a phone's portrait clip (ffprobe: "rotation of -90.00 degrees"): FFmpeg's autorotate
    # turns it clockwise, so the stored top-left corner is shown top-right.
    source = clip("phone.mp4", frames=6, size=(64, 48), rotation=rotation, audio=None)
    stored, shown_s = frame_near(str(source), 0.0)
    shown, upright_s = frame_near(str(source), 0.0, upright=True)
    assert upright_s == shown_s and stored.shape == (48, 64, 3)
    assert shown.shape == ((64, 48, 3) if rotation % 180 else (48, 64, 3))
    assert np.array_equal(shown[corner], stored[0, 0]) and shown.flags.c_contiguous


def test_frame_near_reads_a_file_object_and_refuses_a_video_without_frames(clip, tmp_path):
    source = clip("in.mkv", frames=12, fps=24, gop=4, audio=None)
    with open(source, "rb") as handle:
        rgb, shown_s = frame_near(handle, 0.25)
    assert shown_s == 0.25 and _frame_index(rgb, 12)[0] == 6
    empty = tmp_path / "zero.mkv"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 48
        _one_audio_frame(out)
    with pytest.raises(VideoError, match="no video frame could be decoded") as refused:
        frame_near(str(empty))
    assert refused.value.kind == "zero_frames"
    song = tmp_path / "song.m4a"
    with av.open(str(song), "w") as out:
        _one_audio_frame(out)
    with pytest.raises(VideoError) as refused:
        frame_near(str(song))
    assert refused.value.kind == "no_video_stream"
