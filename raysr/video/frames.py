"""Frames to model pixels and back: YUV (any depth) → RGB numpy → YUV, colour-exact.

The same matrix and range are used on the way in and on the way out, so an
identity "upscaler" gives the input's YUV back (up to rounding), and the output
is tagged with what was used. Untagged inputs are read as players read them
(BT.601 below 720 lines, BT.709 from 720), and the output is tagged with that
matrix: after upscaling SD to HD an untagged file would otherwise be shown with
the other matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from raysr.video.options import bit_depth, normalize_pix_fmt

# FFmpeg's AVColorSpace → swscale's SWS_CS_* (the matrices swscale implements).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_BT709, _SMPTE170M, _UNSPECIFIED = 1, 6, 2
RANGE_LIMITED, RANGE_FULL = 1, 2
_MATRIX_NAMES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
                 7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}


@dataclass(frozen=True)
class ColorTags:
    """Colour metadata as FFmpeg enums (ints): ``AVColorSpace``, ``AVColorRange``,
    ``AVColorPrimaries``, ``AVColorTransferCharacteristic``; 2 (0 for range) = unspecified."""

    colorspace: int = _UNSPECIFIED
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2

    @classmethod
    def of(cls, source: av.VideoFrame | av.video.codeccontext.VideoCodecContext) -> ColorTags:
        return cls(int(source.colorspace), int(source.color_range),
                   int(source.color_primaries), int(source.color_trc))


@dataclass(frozen=True)
class FrameConversion:
    """How one video's frames reach the model and come back.

    Attributes:
        input_pix_fmt: the decoder's pixel format.
        output_pix_fmt: the encoder's pixel format.
        rgb_format: ``rgb24`` (model sees (H, W, 3) uint8) or ``rgb48le`` ((H, W, 3)
            uint16, full 0–65535 range) when input or output has more than 8 bits.
        matrix: ``AVColorSpace`` used for YUV↔RGB both ways.
        color_range: ``AVColorRange`` used both ways (1 limited, 2 full).
        tags: what the encoder writes (matrix and range as used; primaries and
            transfer copied from the input, unspecified stays unspecified).
        notes: assumptions made (``untagged matrix read as smpte170m``).
    """

    input_pix_fmt: str
    output_pix_fmt: str
    rgb_format: str
    matrix: int
    color_range: int
    tags: ColorTags
    notes: tuple[str, ...] = ()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.rgb_format == "rgb48le" else np.uint8)


def plan_conversion(input_pix_fmt: str, height: int, tags: ColorTags, output_pix_fmt: str) -> FrameConversion:
    """Decide matrix, range and RGB working format for a video ``height`` lines tall."""
    plain, full = normalize_pix_fmt(input_pix_fmt)
    notes: list[str] = []
    matrix = tags.colorspace
    if matrix not in _SWS_MATRIX:
        matrix = _SMPTE170M if height < 720 else _BT709
        if not av.VideoFormat(plain).is_rgb:
            notes.append(f"untagged colour matrix ({_MATRIX_NAMES.get(tags.colorspace, tags.colorspace)}) "
                         f"read as {_MATRIX_NAMES[matrix]} ({height} lines) and tagged so")
    color_range = tags.color_range if tags.color_range in (RANGE_LIMITED, RANGE_FULL) else (
        RANGE_FULL if full else RANGE_LIMITED)
    deep = max(bit_depth(plain), bit_depth(output_pix_fmt)) > 8
    return FrameConversion(
        input_pix_fmt=input_pix_fmt,
        output_pix_fmt=output_pix_fmt,
        rgb_format="rgb48le" if deep else "rgb24",
        matrix=matrix,
        color_range=color_range,
        tags=ColorTags(matrix, color_range, tags.color_primaries, tags.color_trc),
        notes=tuple(notes),
    )


def frame_to_rgb(frame: av.VideoFrame, conversion: FrameConversion) -> np.ndarray:
    """A decoded frame → (H, W, 3) RGB, uint8 (``rgb24``) or uint16 (``rgb48le``), full range."""
    return frame.to_ndarray(
        format=conversion.rgb_format,
        src_colorspace=_SWS_MATRIX[conversion.matrix],
        src_color_range=conversion.color_range,
        dst_color_range=RANGE_FULL,
    )


def rgb_to_frame(rgb: np.ndarray, conversion: FrameConversion) -> av.VideoFrame:
    """(H, W, 3) RGB in :attr:`FrameConversion.dtype` → a frame in the output pixel format.

    Raises:
        ValueError: the array is not (H, W, 3) of the expected dtype (the message says which).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != conversion.dtype:
        raise ValueError(f"expected an (H, W, 3) {conversion.dtype} RGB array, got {rgb.shape} {rgb.dtype}")
    rgb_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=conversion.rgb_format)
    frame = rgb_frame.reformat(
        format=conversion.output_pix_fmt,
        src_color_range=RANGE_FULL,
        dst_colorspace=_SWS_MATRIX[conversion.matrix],
        dst_color_range=conversion.color_range,
    )
    frame.colorspace = conversion.tags.colorspace
    frame.color_range = conversion.tags.color_range
    frame.color_primaries = conversion.tags.color_primaries
    frame.color_trc = conversion.tags.color_trc
    return frame


def first_frame_rgb(path: str) -> np.ndarray:
    """The first decodable frame as (H, W, 3) uint8 RGB (for content routing)."""
    from raysr.video.errors import VideoError

    with av.open(path) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise VideoError("zero_frames", f"{path}: no decodable video frame; the file is empty or damaged", path)
