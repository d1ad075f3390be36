"""Encoding options for upscaled video: the one home of their defaults.

``codec`` picks the encoder (``libx264`` default, ``libx265``, ``ffv1`` lossless);
``crf`` and ``preset`` apply to x264/x265 only (ffv1 is lossless and has neither).
``pix_fmt=None`` keeps the input's layout where the encoder supports it, so 10-bit
input stays 10-bit (``yuv420p10le`` when nothing closer is supported).
"""

from __future__ import annotations

from dataclasses import dataclass

import av

CODECS = ("libx264", "libx265", "ffv1")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
CRF_RANGE = (0, 51)


@dataclass(frozen=True)
class EncodeOptions:
    """How each segment is encoded.

    Attributes:
        codec: ``libx264`` | ``libx265`` | ``ffv1``.
        crf: constant rate factor for x264/x265, 0 (lossless) to 51; ignored by ffv1.
        preset: x264/x265 speed preset (``ultrafast`` … ``placebo``); ignored by ffv1.
        pix_fmt: output pixel format; ``None`` = keep the input's chroma layout and bit
            depth where the codec supports it, else ``yuv420p10le`` (>8-bit input) or ``yuv420p``.
        threads: encoder threads; 0 lets the encoder choose.

    Example:
        >>> EncodeOptions(codec="ffv1").codec
        'ffv1'
    """

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"EncodeOptions.codec: expected one of {CODECS}, got {self.codec!r}")
        if self.codec not in av.codecs_available:
            raise ValueError(
                f"EncodeOptions.codec: {self.codec} is not in this PyAV build's FFmpeg; "
                "pick another codec or install a PyAV wheel that has it"
            )
        if not isinstance(self.crf, int) or not CRF_RANGE[0] <= self.crf <= CRF_RANGE[1]:
            raise ValueError(f"EncodeOptions.crf: expected an int in {CRF_RANGE}, got {self.crf!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"EncodeOptions.preset: expected one of {PRESETS}, got {self.preset!r}")
        if self.pix_fmt is not None and self.pix_fmt not in supported_pix_fmts(self.codec):
            raise ValueError(
                f"EncodeOptions.pix_fmt: {self.codec} cannot encode {self.pix_fmt!r}; it supports "
                f"{sorted(supported_pix_fmts(self.codec))}"
            )
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"EncodeOptions.threads: expected an int >= 0, got {self.threads!r}")

    def codec_options(self) -> dict[str, str]:
        """The encoder's private options (``AVCodecContext`` options as strings)."""
        if self.codec == "ffv1":
            # Level 3: slices (threads) and per-slice CRCs; every frame is intra.
            return {"level": "3", "slicecrc": "1", "g": "1"}
        options = {"crf": str(self.crf), "preset": self.preset}
        if self.codec == "libx265":
            options["x265-params"] = "log-level=error"
        return options


def supported_pix_fmts(codec: str) -> frozenset[str]:
    """Pixel formats the encoder ``codec`` accepts."""
    return frozenset(fmt.name for fmt in av.codec.Codec(codec, "w").video_formats or ())


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of the first component (8 for ``yuv420p``, 10 for ``yuv420p10le``)."""
    return int(av.VideoFormat(pix_fmt).components[0].bits)


# Deprecated full-range aliases: the same planes as the plain format with color_range=JPEG.
_JPEG_ALIASES = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p", "yuvj440p": "yuv440p"}


def normalize_pix_fmt(pix_fmt: str) -> tuple[str, bool]:
    """``(format, full_range)``: ``yuvj420p`` → ``("yuv420p", True)``, others unchanged."""
    if pix_fmt in _JPEG_ALIASES:
        return _JPEG_ALIASES[pix_fmt], True
    return pix_fmt, False


def choose_pix_fmt(options: EncodeOptions, input_pix_fmt: str) -> str:
    """The output pixel format for an input in ``input_pix_fmt``.

    Keeps the input's format when the codec supports it (a planar YUV or gray
    format), else the closest 4:2:0 format of the same depth class.

    Example:
        >>> choose_pix_fmt(EncodeOptions(), "yuv420p10le")
        'yuv420p10le'
    """
    if options.pix_fmt is not None:
        return options.pix_fmt
    supported = supported_pix_fmts(options.codec)
    plain, _ = normalize_pix_fmt(input_pix_fmt)
    keepable = plain.startswith(("yuv", "gray")) and not plain.startswith("yuva")
    if keepable and plain in supported:
        return plain
    if bit_depth(plain) > 8 and "yuv420p10le" in supported:
        return "yuv420p10le"
    return "yuv420p"
