"""join_segments: segments concatenate without re-encoding; audio, subtitles, chapters are copied."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import av
import numpy as np
import pytest

from raysr.video.errors import VideoError
from raysr.video.frames import frame_to_rgb, plan_conversion, rgb_to_frame
from raysr.video.join import join_segments
from raysr.video.options import EncodeOptions
from raysr.video.probe import plan_segments
from raysr.video.segment import encode_segment

FFV1 = EncodeOptions(codec="ffv1")


def _encode_all(path, fn, target, options=None):
    return [encode_segment(path, s, fn, options) for s in plan_segments(path, target)]


def _decoded(path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(frame.pts, frame.to_ndarray()) for frame in container.decode(video=0)]


def _packet_hashes(path, kind: str) -> list[str]:
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        return [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(*streams) if p.size]


@pytest.mark.parametrize("open_gop", [False, True])
def test_segment_parallel_equals_sequential_frame_for_frame(clip, upscale2x, tmp_path, open_gop):
    """Lossless output, so any frame decoded wrongly at a segment boundary would show.

    With open GOPs, B-frames just after a keyframe show frames *before* it and reference
    the GOP before: they belong to the previous segment, which decodes past its end for them.
    """
    path = clip("a.mkv", open_gop=open_gop)
    parallel = join_segments(path, _encode_all(path, upscale2x, 0.4, FFV1), tmp_path / "parallel.mkv")
    sequential = join_segments(path, _encode_all(path, upscale2x, math.inf, FFV1), tmp_path / "sequential.mkv")
    a, b = _decoded(parallel.output), _decoded(sequential.output)
    assert len(a) == len(b) == 48
    assert all(pa == pb and np.array_equal(fa, fb) for (pa, fa), (pb, fb) in zip(a, b))
    # and both equal each input frame converted, upscaled and converted back (ffv1 is lossless)
    segment = plan_segments(path, math.inf)[0]
    conversion = plan_conversion(segment.info.pix_fmt, 48, segment.info.color, "yuv420p")
    with av.open(str(path)) as container:
        expected = [rgb_to_frame(upscale2x(frame_to_rgb(f, conversion)), conversion).to_ndarray()
                    for f in container.decode(video=0)]
    assert all(np.array_equal(frame, wanted) for (_, frame), wanted in zip(a, expected))


def test_audio_packets_are_copied_bit_exact(clip, upscale2x, tmp_path):
    for name, audio in (("aac.mp4", "aac"), ("pcm.mkv", "pcm_s16le")):
        path = clip(name, audio=audio)
        result = join_segments(path, _encode_all(path, upscale2x, 0.4), tmp_path / f"out-{name}")
        assert _packet_hashes(result.output, "audio") == _packet_hashes(path, "audio") != []


def test_dts_rebuilt_increasing_and_not_after_pts(clip, upscale2x, tmp_path):
    path = clip("a.mp4")
    result = join_segments(path, _encode_all(path, upscale2x, 0.4), tmp_path / "out.mp4")
    with av.open(result.output) as container:
        packets = [(p.pts, p.dts) for p in container.demux(video=0) if p.size]
    dts = [d for _, d in packets]
    assert result.reorder_depth >= 1  # x264's B-frames: the case that needs new DTS at the joins
    assert all(a < b for a, b in zip(dts, dts[1:])) and all(d <= p for p, d in packets)


def test_subtitles_chapters_rotation_copied(clip, upscale2x, tmp_path):
    path = clip("a.mkv", subtitles="subrip", chapters=True, rotation=90)
    result = join_segments(path, _encode_all(path, upscale2x, 0.4), tmp_path / "out.mkv")
    assert result.dropped == {} and result.chapters == 2
    assert _packet_hashes(result.output, "subtitle") == _packet_hashes(path, "subtitle") != []
    with av.open(result.output) as container:
        assert [c["metadata"]["title"] for c in container.chapters()] == ["one", "two"]
        assert next(container.decode(video=0)).rotation == 90


def test_subtitles_the_container_cannot_hold_are_dropped_with_a_reason(clip, upscale2x, tmp_path):
    path = clip("a.mp4", subtitles="mov_text")
    result = join_segments(path, _encode_all(path, upscale2x, math.inf), tmp_path / "out.mkv")
    assert list(result.dropped) == [2] and "mov_text subtitle cannot be copied into matroska" in result.dropped[2]
    assert result.stream_map == {0: 0, 1: 1}


def test_attachments_copied_into_matroska(clip, upscale2x, tmp_path):
    path = clip("a.mkv", audio=None)
    with_font = tmp_path / "font.mkv"
    with av.open(str(path)) as source, av.open(str(with_font), "w") as out:
        video = out.add_stream_from_template(source.streams.video[0])
        out.add_attachment("font.ttf", "font/ttf", b"\x00\x01fontdata")
        for packet in source.demux(video=0):
            if packet.size:
                packet.stream = video
                out.mux(packet)
    result = join_segments(with_font, _encode_all(with_font, upscale2x, math.inf), tmp_path / "out.mkv")
    with av.open(result.output) as container:
        attachments = [s for s in container.streams if s.type == "attachment"]
        assert [(s.metadata.get("filename"), s.data) for s in attachments] == [("font.ttf", b"\x00\x01fontdata")]


def test_missing_or_mismatched_segments_refused(clip, upscale2x, tmp_path):
    path = clip("a.mp4")
    encoded = _encode_all(path, upscale2x, 0.4)
    with pytest.raises(VideoError, match=r"segments \[0, 1, 3\] do not cover the plan") as caught:
        join_segments(path, [encoded[0], encoded[1], encoded[3]], tmp_path / "x.mp4")
    assert caught.value.kind == "join_failed"
    with pytest.raises(VideoError, match="no segments to join"):
        join_segments(path, [], tmp_path / "x.mp4")
    other = dataclasses.replace(encoded[2], width=64)
    with pytest.raises(VideoError, match="same model and EncodeOptions"):
        join_segments(path, [encoded[0], encoded[1], other, encoded[3]], tmp_path / "x.mp4")
    assert join_segments(path, list(reversed(encoded)), tmp_path / "any-order.mp4").frames == 48


def test_audio_the_container_cannot_hold_is_an_error(clip, upscale2x, tmp_path):
    path = clip("u8.mkv", audio="pcm_u8")
    with pytest.raises(VideoError, match=r"audio track #1 \(pcm_u8\) cannot be copied into mp4") as caught:
        join_segments(path, _encode_all(path, upscale2x, math.inf), tmp_path / "out.mp4")
    assert caught.value.kind == "unsupported_stream"


def test_video_codec_the_container_cannot_hold(clip, upscale2x, tmp_path):
    path = clip("a.mkv", audio=None)
    with pytest.raises(VideoError, match="webm container cannot hold ffv1") as caught:
        join_segments(path, _encode_all(path, upscale2x, math.inf, FFV1), tmp_path / "out.webm")
    assert caught.value.kind == "join_failed"
