"""verify_video: a faithful output passes; each kind of damage is reported, none raises."""

from __future__ import annotations

import dataclasses
import math

import av
import pytest

from raysr.video.join import join_segments
from raysr.video.probe import plan_segments
from raysr.video.segment import encode_segment
from raysr.video.verify import verify_video


def _joined(path, fn, output):
    segments = plan_segments(path, 0.4)
    return segments[0].info, join_segments(path, [encode_segment(path, s, fn) for s in segments], output)


def _remux(source, target, audio_shift: int = 0, drop_last_video: bool = False):
    """Copy ``source`` packet by packet into ``target``, damaging it on request."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        streams = {}
        for stream in inp.streams:
            if stream.type in ("video", "audio"):
                streams[stream.index] = out.add_stream_from_template(stream)
        video = inp.streams.video[0]
        packets = [p for p in inp.demux(*[inp.streams[i] for i in streams]) if p.size]
        last_video = max(p.pts for p in packets if p.stream_index == video.index)
        for packet in packets:
            if drop_last_video and packet.stream_index == video.index and packet.pts == last_video:
                continue
            if packet.stream_index != video.index and audio_shift:
                packet.pts += audio_shift
                packet.dts += audio_shift
            packet.stream = streams[packet.stream_index]
            out.mux(packet)


def test_faithful_output_passes(clip, upscale2x, tmp_path):
    path = clip("a.mp4", rotation=90)
    info, join = _joined(path, upscale2x, tmp_path / "out.mp4")
    check = verify_video(path, info, join, decode=True)
    assert check.ok, check.problems
    assert (check.frames_in, check.frames_out, check.frames_decoded) == (48, 48, 48)
    assert check.duration_out_s == pytest.approx(check.duration_in_s) == pytest.approx(2.0)
    assert check.max_pts_error_s == 0 and check.timeline_shift_s == 0 and check.rotation_out == 90
    (audio,) = check.streams
    assert audio.type == "audio" and audio.sha256_in == audio.sha256_out and audio.packets_in > 0
    assert audio.offset_out_s == pytest.approx(audio.offset_in_s)


def test_missing_frame_and_moved_audio_reported(clip, upscale2x, tmp_path):
    path = clip("a.mkv")
    info, join = _joined(path, upscale2x, tmp_path / "out.mkv")
    _remux(join.output, tmp_path / "short.mkv", drop_last_video=True)
    check = verify_video(path, info, dataclasses.replace(join, output=str(tmp_path / "short.mkv")))
    assert not check.ok and any("47 video frames" in p for p in check.problems)
    _remux(join.output, tmp_path / "late.mkv", audio_shift=100)  # +0.1 s (1/1000 time base)
    check = verify_video(path, info, dataclasses.replace(join, output=str(tmp_path / "late.mkv")))
    assert any("audio stream #1 starts" in p for p in check.problems), check.problems


def test_other_audio_and_lost_rotation_reported(clip, upscale2x, tmp_path):
    path = clip("a.mkv", rotation=90)
    info, join = _joined(path, upscale2x, tmp_path / "out.mkv")
    other = clip("other.mkv", audio="pcm_s16le")
    _, other_join = _joined(other, upscale2x, tmp_path / "other-out.mkv")
    check = verify_video(path, info, dataclasses.replace(join, output=other_join.output))
    assert any("bytes differ" in p for p in check.problems)
    assert any("display rotation 0°, input 90°" in p for p in check.problems)


def test_vfr_timestamps_compared_frame_by_frame(clip, upscale2x, tmp_path):
    path = clip("v.mp4", vfr=True)
    segments = plan_segments(path, math.inf)
    join = join_segments(path, [encode_segment(path, segments[0], upscale2x)], tmp_path / "out.mp4")
    check = verify_video(path, segments[0].info, join)
    assert check.ok and check.max_pts_error_s == 0
