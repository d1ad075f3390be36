"""EncodeOptions: defaults, validation naming the field, and the pixel-format rule (10-bit stays 10-bit)."""

from __future__ import annotations

import pytest

from raysr.video.options import EncodeOptions, bit_depth, choose_pix_fmt, normalize_pix_fmt


def test_defaults():
    options = EncodeOptions()
    assert (options.codec, options.crf, options.preset, options.pix_fmt) == ("libx264", 18, "medium", None)
    assert options.codec_options() == {"crf": "18", "preset": "medium"}


@pytest.mark.parametrize(("field", "value"), [
    ("codec", "libvpx"), ("crf", 52), ("crf", -1), ("crf", 18.5), ("preset", "warp"),
    ("pix_fmt", "rgb24"), ("threads", -1),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"EncodeOptions.{field}"):
        EncodeOptions(**{field: value})


def test_codec_options_per_codec():
    assert "x265-params" in EncodeOptions(codec="libx265").codec_options()
    assert EncodeOptions(codec="ffv1").codec_options()["level"] == "3"


@pytest.mark.parametrize(("codec", "source", "expected"), [
    ("libx264", "yuv420p", "yuv420p"),
    ("libx264", "yuv420p10le", "yuv420p10le"),
    ("libx265", "yuv420p10le", "yuv420p10le"),
    ("ffv1", "yuv420p10le", "yuv420p10le"),
    ("libx264", "yuv422p10le", "yuv422p10le"),
    ("libx264", "yuvj420p", "yuv420p"),          # full range travels as color_range, not the format
    ("libx264", "rgb24", "yuv420p"),
    ("libx264", "yuv420p12le", "yuv420p10le"),   # x264 has no 12-bit: the closest deep format
    ("libx264", "yuva420p", "yuv420p"),
])
def test_choose_pix_fmt(codec, source, expected):
    assert choose_pix_fmt(EncodeOptions(codec=codec), source) == expected


def test_explicit_pix_fmt_wins():
    assert choose_pix_fmt(EncodeOptions(pix_fmt="yuv444p"), "yuv420p10le") == "yuv444p"


def test_helpers():
    assert bit_depth("yuv420p") == 8 and bit_depth("yuv420p10le") == 10
    assert normalize_pix_fmt("yuvj422p") == ("yuv422p", True)
    assert normalize_pix_fmt("yuv420p") == ("yuv420p", False)
