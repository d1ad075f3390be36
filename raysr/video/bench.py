"""Video throughput: the segment path against a plain decode → model → encode loop.

A benchmark to print (``raysr bench``), never a timed test. Both paths use the
same colour conversion and encoder settings; the plain loop writes the video
stream alone, the segment path also plans, joins (copying audio) and verifies,
so its figure includes all the overhead segmenting costs.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import av

from raysr.video.frames import frame_to_rgb, plan_conversion, rgb_to_frame
from raysr.video.options import EncodeOptions, choose_pix_fmt
from raysr.video.pipeline import upscale_video
from raysr.video.probe import probe_video
from raysr.video.segment import UpscaleFn


def sequential_loop(source: str | os.PathLike[str], upscale_fn: UpscaleFn, options: EncodeOptions | None = None) -> int:
    """Decode every frame, upscale, encode into an in-memory Matroska file; returns frames written."""
    options = options or EncodeOptions()
    info = probe_video(source)
    conversion = plan_conversion(info.pix_fmt, info.height, info.color, choose_pix_fmt(options, info.pix_fmt))
    frames = 0
    with av.open(str(source), "r") as container, av.open(io.BytesIO(), "w", format="matroska") as out:
        stream = container.streams[info.stream_index]
        stream.thread_type = "AUTO"
        encoder = None
        for frame in container.decode(stream):
            rgb = upscale_fn(frame_to_rgb(frame, conversion))
            if encoder is None:
                encoder = out.add_stream(options.codec, rate=info.average_rate or 25)
                encoder.width, encoder.height, encoder.pix_fmt = rgb.shape[1], rgb.shape[0], conversion.output_pix_fmt
                encoder.codec_context.time_base = info.time_base
                encoder.codec_context.options = options.codec_options()
            encoded = rgb_to_frame(rgb, conversion)
            encoded.pts, encoded.time_base = frame.pts, info.time_base
            for packet in encoder.encode(encoded):
                out.mux(packet)
            frames += 1
        for packet in encoder.encode(None) if encoder else ():
            out.mux(packet)
    return frames


def bench_video(
    path: str | os.PathLike[str],
    upscale_fn: UpscaleFn,
    options: EncodeOptions | None = None,
    target_seconds: float = 2.0,
    workers: int = 1,
    repeats: int = 3,
) -> dict:
    """Frames per second of :func:`upscale_video` (segments, join, verify) vs :func:`sequential_loop`.

    Both run once to warm up (codec and model first-call costs), then ``repeats``
    times alternately; the medians are reported.

    Returns:
        ``{"frames", "segments", "workers", "repeats", "sequential_fps", "segment_fps", "speedup",
        "segment_phases_s": {plan, decode, upscale, encode, join, verify}}`` (phases of the last run).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    sequential_s, segment_s = [], []
    with tempfile.TemporaryDirectory(prefix="raysr-bench-") as work:
        for run in range(repeats + 1):
            started = time.perf_counter()
            frames = sequential_loop(path, upscale_fn, options)
            sequential_s.append(time.perf_counter() - started)
            result = upscale_video(path, Path(work) / f"out{run}.mkv", upscale_fn, options,
                                   target_seconds=target_seconds, workers=workers)
            segment_s.append(result.wall_s)
    sequential, segmented = statistics.median(sequential_s[1:]), statistics.median(segment_s[1:])
    return {
        "frames": frames,
        "segments": result.segments,
        "workers": workers,
        "repeats": repeats,
        "sequential_fps": round(frames / sequential, 2),
        "segment_fps": round(result.frames / segmented, 2),
        "speedup": round(sequential / segmented, 3),
        "segment_phases_s": {name: round(getattr(result, f"{name}_s"), 3)
                             for name in ("plan", "decode", "upscale", "encode", "join", "verify")},
    }
