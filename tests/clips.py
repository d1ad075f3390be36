"""Short clips generated with PyAV inside the tests (no files shipped, no system ffmpeg).

Importable from any test (``tests/`` is on pytest's pythonpath)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a smooth gradient with a bar and a dot that move every frame."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 200 // max(width - 1, 1), y * 200 // max(height - 1, 1),
                      np.full_like(x, (index * 9) % 200)], axis=-1).astype(np.uint8)
    image[:, (index * 3) % width] = (250, 250, 250)
    image[(index * 2) % height, (index * 5) % width] = (10, 240, 10)
    return image


def write_clip(
    path: Path,
    frames: int = 48,
    size: tuple[int, int] = (64, 48),
    fps: int = 24,
    gop: int = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | None = "aac",
    vfr: bool = False,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    sar: Fraction | None = None,
    color: tuple[int, int, int] | None = None,
    subtitles: str | None = None,
    chapters: bool = False,
    open_gop: bool = False,
    start_s: float = 0.0,
) -> list[int]:
    """Write a clip; returns the video pts written (in ``time_base``, default 1/fps, VFR 1/90000).

    ``color`` = (primaries, transfer, matrix) FFmpeg enum values, e.g. (1, 1, 1) for BT.709.
    ``open_gop``: x264 open GOPs (keyframes whose leading B-frames reference the GOP before).
    ``start_s``: the first video pts (the audio still starts at 0).
    """
    width, height = size
    rng = np.random.default_rng(7)
    tb = time_base or (Fraction(1, 90000) if vfr else Fraction(1, fps))
    step = int(1 / (fps * tb))
    pts_written: list[int] = []
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = video.codec_context.time_base = tb
        video.gop_size = gop
        if codec == "libx264":
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0" + (":open-gop=1:bframes=3" if open_gop else "")
            video.codec_context.options = {"x264-params": params, "preset": "fast"}
        if sar:
            video.codec_context.sample_aspect_ratio = sar
        if color:
            context = video.codec_context
            context.color_primaries, context.color_trc, context.colorspace = color
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=48000)
            sound.layout = "stereo"
        text = out.add_mux_stream(subtitles) if subtitles else None
        if chapters:
            out.set_chapters([
                {"id": 1, "start": 0, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "one"}},
                {"id": 2, "start": 1000, "end": 2000, "time_base": Fraction(1, 1000), "metadata": {"title": "two"}},
            ])
        pts = round(start_s / tb)
        for index in range(frames):
            rgb = pattern(index, width, height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if color:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=color[2], dst_color_range=1)
            frame.pts, frame.time_base = pts, tb
            pts_written.append(pts)
            pts += int(rng.integers(step // 3, step * 3)) if vfr else step
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            _write_audio(out, sound, seconds=float(pts * tb) + 0.1)
        if text is not None:
            for index, start in enumerate((0, 1000)):
                payload = f"line {index}".encode()
                if subtitles == "mov_text":  # tx3g samples: 16-bit length, then the text
                    payload = len(payload).to_bytes(2, "big") + payload
                packet = av.Packet(payload)
                packet.pts = packet.dts = start
                packet.duration = 800
                packet.time_base = Fraction(1, 1000)
                packet.stream = text
                out.mux(packet)
    return pts_written


_SAMPLE_FORMATS = {"aac": ("fltp", np.float32, 1.0), "pcm_s16le": ("s16", np.int16, 32767), "pcm_u8": ("u8", np.uint8, 127)}


def _write_audio(out, stream, seconds: float) -> None:
    """A 440 Hz stereo sine in 1024-sample frames, for ``seconds``."""
    rate, chunk = 48000, 1024
    sample_format, dtype, amplitude = _SAMPLE_FORMATS[stream.codec_context.name]
    for start in range(0, int(seconds * rate), chunk):
        wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(start, start + chunk) / rate) * amplitude
        if dtype == np.uint8:
            wave = wave + 128
        if sample_format == "fltp":
            samples = np.stack([wave, wave]).astype(dtype)
        else:  # packed: one plane, L R L R …
            samples = np.repeat(wave.astype(dtype)[:, None], 2, axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format, layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def nearest2x(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) → (2H, 2W, 3), same dtype: the trivial upscaler of these tests."""
    return rgb.repeat(2, axis=0).repeat(2, axis=1)
