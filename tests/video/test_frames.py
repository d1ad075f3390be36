"""Frame conversion: YUV → RGB → YUV is stable for every depth and matrix, and tags follow what was used."""

from __future__ import annotations

import numpy as np
import pytest

from raysr.video.frames import ColorTags, frame_to_rgb, plan_conversion, rgb_to_frame
from raysr.video.options import bit_depth


def smooth(width: int = 64, height: int = 48) -> np.ndarray:
    """(H, W, 3) uint8: gradients only (sharp chroma edges do not survive 4:2:0 twice exactly)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 3 + 20, y * 4 + 10, 200 - x - y], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le", "yuv444p", "yuv422p10le"])
@pytest.mark.parametrize(("matrix", "color_range"), [(1, 1), (6, 1), (2, 0), (1, 2), (9, 1)])
def test_round_trip_is_stable(pix_fmt, matrix, color_range):
    conversion = plan_conversion(pix_fmt, 48, ColorTags(matrix, color_range, 1, 1), pix_fmt)
    rgb = smooth()
    rgb = rgb.astype(np.uint16) * 257 if conversion.dtype == np.uint16 else rgb
    first = rgb_to_frame(rgb, conversion)
    back = frame_to_rgb(first, conversion)
    again = rgb_to_frame(back, conversion)
    assert first.format.name == pix_fmt and back.dtype == conversion.dtype and back.shape == (48, 64, 3)
    tolerance = 2 << (bit_depth(pix_fmt) - 8)  # two 8-bit code values
    assert np.abs(first.to_ndarray().astype(int) - again.to_ndarray().astype(int)).max() <= tolerance


def test_matrix_mismatch_would_show():
    """The round trip above has teeth: reading BT.709 YUV as BT.601 shifts colours by far more than 2."""
    bt709 = plan_conversion("yuv444p", 48, ColorTags(1, 1, 1, 1), "yuv444p")
    bt601 = plan_conversion("yuv444p", 48, ColorTags(6, 1, 1, 1), "yuv444p")
    rgb = frame_to_rgb(rgb_to_frame(smooth(), bt709), bt601)
    assert np.abs(rgb.astype(int) - smooth().astype(int)).max() > 10


def test_deep_formats_use_16_bit_rgb():
    assert plan_conversion("yuv420p10le", 48, ColorTags(), "yuv420p10le").rgb_format == "rgb48le"
    assert plan_conversion("yuv420p", 48, ColorTags(), "yuv420p10le").dtype == np.uint16
    assert plan_conversion("yuv420p", 48, ColorTags(), "yuv420p").dtype == np.uint8


def test_untagged_matrix_is_read_by_height_and_tagged():
    small = plan_conversion("yuv420p", 480, ColorTags(), "yuv420p")
    large = plan_conversion("yuv420p", 720, ColorTags(), "yuv420p")
    assert (small.matrix, large.matrix) == (6, 1)
    assert small.tags.colorspace == 6 and small.tags.color_range == 1
    assert "untagged colour matrix" in small.notes[0]


def test_tags_copied_and_full_range_alias(rgb_pattern):
    conversion = plan_conversion("yuvj420p", 48, ColorTags(2, 0, 9, 16), "yuv420p")
    assert conversion.color_range == 2
    assert (conversion.tags.color_primaries, conversion.tags.color_trc) == (9, 16)
    frame = rgb_to_frame(rgb_pattern(0, 64, 48), conversion)
    assert (frame.color_range, frame.color_primaries, frame.color_trc) == (2, 9, 16)


def test_limited_range_black_and_white():
    conversion = plan_conversion("yuv444p", 48, ColorTags(1, 1, 1, 1), "yuv444p")
    levels = np.zeros((16, 16, 3), np.uint8)
    levels[:, 8:] = 255
    plane = rgb_to_frame(levels, conversion).planes[0]
    luma = np.frombuffer(bytes(plane), np.uint8).reshape(16, plane.line_size)[:, :16]
    assert luma[:, :8].max() == 16 and luma[:, 8:].min() == 235


def test_wrong_array_refused():
    conversion = plan_conversion("yuv420p", 48, ColorTags(), "yuv420p")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8"):
        rgb_to_frame(np.zeros((4, 4, 3), np.uint16), conversion)
    with pytest.raises(ValueError, match=r"got \(4, 4\)"):
        rgb_to_frame(np.zeros((4, 4), np.uint8), conversion)
