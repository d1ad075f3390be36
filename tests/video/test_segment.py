"""encode_segment: one segment decodes on its own, frames keep their pts, bad model output is named."""

from __future__ import annotations

import av
import numpy as np
import pytest

from raysr.video.errors import VideoError
from raysr.video.options import EncodeOptions
from raysr.video.probe import plan_segments
from raysr.video.segment import EncodedSegment, encode_segment, stored_pts_offset


def _frames(encoded: EncodedSegment) -> list[av.VideoFrame]:
    with encoded.open() as container:
        return list(container.decode(video=0))


def test_middle_segment_decodes_alone_with_input_pts(clip, upscale2x):
    path = clip("a.mp4")
    segments = plan_segments(path, 0.4)
    middle = segments[2]
    encoded = encode_segment(path, middle, upscale2x)
    frames = _frames(encoded)
    assert encoded.frames == len(frames) == middle.frame_count == 12
    assert (encoded.width, encoded.height, frames[0].width, frames[0].height) == (128, 96, 128, 96)
    with av.open(str(path)) as container:
        expected = sorted(p.pts for p in container.demux(video=0) if p.size)[24:36]
        time_base = container.streams.video[0].time_base
    offset = stored_pts_offset(middle.info)
    assert [round(f.pts * f.time_base / time_base) - offset for f in frames] == expected
    assert frames[0].key_frame


def test_bytes_and_file_outputs_match(clip, upscale2x, tmp_path):
    path = clip("a.mkv", codec="ffv1", audio=None)
    segment = plan_segments(path, 0.4)[1]
    in_memory = encode_segment(path, segment, upscale2x, EncodeOptions(codec="ffv1"))
    on_disk = encode_segment(path, segment, upscale2x, EncodeOptions(codec="ffv1"), tmp_path / "s.nut")
    assert in_memory.path is None and in_memory.data and on_disk.data is None
    assert all(np.array_equal(a.to_ndarray(), b.to_ndarray()) for a, b in zip(_frames(in_memory), _frames(on_disk)))


def test_ten_bit_reaches_the_model_as_uint16(clip):
    path = clip("ten.mkv", pix_fmt="yuv420p10le")
    seen = []

    def spy(rgb: np.ndarray) -> np.ndarray:
        seen.append((rgb.dtype, rgb.shape, int(rgb.max())))
        return rgb.repeat(2, axis=0).repeat(2, axis=1)

    encoded = encode_segment(path, plan_segments(path, 0.4)[0], spy)
    assert encoded.pix_fmt == "yuv420p10le" and _frames(encoded)[0].format.name == "yuv420p10le"
    assert seen[0][:2] == (np.dtype(np.uint16), (48, 64, 3)) and seen[0][2] > 255


@pytest.mark.parametrize(("bad", "match"), [
    (lambda rgb: rgb.astype(np.float32), "returned .* float32"),
    (lambda rgb: rgb[:, :, 0], r"returned \(48, 64\)"),
    (lambda rgb: "not an array", "returned str"),
    (lambda rgb: np.zeros((97, 128, 3), np.uint8), "needs sizes divisible by 2x2"),
])
def test_bad_model_output_named(clip, bad, match):
    path = clip("a.mp4")
    with pytest.raises(VideoError, match=match) as caught:
        encode_segment(path, plan_segments(path, 0.4)[0], bad)
    assert caught.value.kind == "bad_upscale_output" and "segment 0" in str(caught.value)


def test_changing_output_size_refused(clip):
    path = clip("a.mp4")
    calls = []

    def grows(rgb: np.ndarray) -> np.ndarray:
        calls.append(1)
        factor = 2 if len(calls) == 1 else 4
        return rgb.repeat(factor, axis=0).repeat(factor, axis=1)

    with pytest.raises(VideoError, match="every frame must come out the same size"):
        encode_segment(path, plan_segments(path, 0.4)[0], grows)


def test_model_errors_keep_their_type_and_name_the_frame(clip):
    path = clip("a.mp4")

    def broken(rgb: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory") as caught:
        encode_segment(path, plan_segments(path, 0.4)[1], broken)
    assert any("segment 1, frame pts" in note and str(path) in note for note in caught.value.__notes__)


def test_x265_segment(clip, upscale2x):
    path = clip("a.mp4", frames=12)
    encoded = encode_segment(path, plan_segments(path, 10)[0], upscale2x,
                             EncodeOptions(codec="libx265", preset="ultrafast"))
    frames = _frames(encoded)
    assert len(frames) == 12 and encoded.codec == "libx265"


def test_segments_and_results_pickle(clip, upscale2x):
    """Ray ships Segment to the actor and EncodedSegment back: both must pickle whole."""
    import pickle

    path = clip("a.mp4", frames=12)
    segment = plan_segments(path, 10)[0]
    encoded = encode_segment(path, segment, upscale2x, EncodeOptions(preset="ultrafast"))
    assert pickle.loads(pickle.dumps(segment)) == segment
    copy = pickle.loads(pickle.dumps(encoded))
    assert copy == encoded and len(_frames(copy)) == 12
