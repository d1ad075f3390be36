"""VideoError: kinds are checked, and kind/path survive pickling (Ray sends errors between processes)."""

from __future__ import annotations

import pickle

import pytest

import av

from raysr.video.errors import KINDS, VideoError, decoding, mp4_cut_off


def test_kind_and_path_kept():
    error = VideoError("truncated", "a.mp4: cut off", "a.mp4")
    assert (error.kind, error.path, str(error)) == ("truncated", "a.mp4", "a.mp4: cut off")
    assert isinstance(error, ValueError)


def test_unknown_kind_refused():
    with pytest.raises(ValueError, match="unknown VideoError kind 'oops'"):
        VideoError("oops", "message")


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_round_trip(kind):
    copy = pickle.loads(pickle.dumps(VideoError(kind, "m", "p")))
    assert (copy.kind, copy.path, str(copy)) == (kind, "p", "m")


def test_mp4_cut_off_reads_top_level_boxes(tmp_path):
    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    whole = box(b"ftyp", b"isom0000") + box(b"mdat", b"x" * 32) + box(b"moov", b"y" * 16)
    (tmp_path / "whole.mp4").write_bytes(whole)
    (tmp_path / "cut.mp4").write_bytes(whole[:-4])
    (tmp_path / "no_moov.mp4").write_bytes(whole[: -(8 + 16)])
    (tmp_path / "not_mp4.mkv").write_bytes(b"\x1aE\xdf\xa3" + b"z" * 40)
    assert not mp4_cut_off(tmp_path / "whole.mp4")
    assert mp4_cut_off(tmp_path / "cut.mp4")
    assert mp4_cut_off(tmp_path / "no_moov.mp4")
    assert not mp4_cut_off(tmp_path / "not_mp4.mkv")


def test_decoding_wraps_ffmpeg_errors_as_corrupt():
    with pytest.raises(VideoError, match="clip.mp4: decoding failed in segment 3") as caught:
        with decoding("clip.mp4", "in segment 3"):
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
    assert caught.value.kind == "corrupt" and caught.value.path == "clip.mp4"
