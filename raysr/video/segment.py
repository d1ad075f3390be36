"""Actor side: decode one segment, upscale each frame, encode the segment.

Frames stream through (decode → RGB → ``upscale_fn`` → encoder); decoding runs
a couple of frames ahead and encoding behind the model, in threads of their own
(:mod:`raysr.video._overlap`), so the model never waits for either. Nothing holds
more than those few frames and the codecs' own buffers, and no frame image is
ever written to disk. The encoded segment is a NUT file (exact timestamps in any
time base, every codec) on disk or in memory; :func:`raysr.video.join.join_segments`
remuxes its packets into the final container without re-encoding.

Every output frame carries its input frame's pts in the input stream's
``time_base`` (stored plus :func:`stored_pts_offset`): variable frame rate survives untouched.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

from raysr.sinks.write import refused_by_store
from raysr.video._overlap import BackgroundSink, prefetch
from raysr.video.errors import VideoError, decoding
from raysr.video.frames import FrameConversion, frame_to_rgb, plan_conversion, rgb_to_frame
from raysr.video.options import EncodeOptions, choose_pix_fmt
from raysr.video.probe import Segment, VideoInfo
from raysr.video.temporal import TemporalBlender, temporal_note

UpscaleFn = Callable[[np.ndarray], np.ndarray]
"""(H, W, 3) RGB uint8 (uint16 for >8-bit video, full 0–65535) → (H·s, W·s, 3), same dtype."""

SEGMENT_FORMAT = "nut"


@dataclass(frozen=True)
class EncodedSegment:
    """One encoded segment: a NUT file at ``path`` or NUT bytes in ``data``.

    Attributes:
        segment: the plan entry it encodes (with the input's :class:`VideoInfo`).
        frames: frames encoded (equals ``segment.frame_count`` or encoding raised).
        width / height / pix_fmt / codec: the encoded video.
        notes: conversion assumptions (untagged matrix …).
        decode_s / upscale_s / encode_s: seconds per phase; decode and encode run in threads
            beside the model, so their sum can exceed the segment's wall time.
    """

    segment: Segment
    path: str | None
    data: bytes | None
    frames: int
    width: int
    height: int
    pix_fmt: str
    codec: str
    notes: tuple[str, ...] = ()
    decode_s: float = 0.0
    upscale_s: float = 0.0
    encode_s: float = 0.0

    def open(self) -> av.container.InputContainer:
        """Open the encoded segment for demuxing."""
        source = self.path if self.path is not None else io.BytesIO(self.data or b"")
        return av.open(source, "r", format=SEGMENT_FORMAT)


def encode_segment(
    source: str | os.PathLike[str],
    segment: Segment,
    upscale_fn: UpscaleFn,
    options: EncodeOptions | None = None,
    output: str | os.PathLike[str] | None = None,
    temporal_strength: float = 0.0,
    warm_up_fn: UpscaleFn | None = None,
) -> EncodedSegment:
    """Decode ``segment`` of ``source``, upscale every frame with ``upscale_fn``, encode it.

    Args:
        source: the input video (the same file the plan probed; any local path).
        segment: one entry of :func:`raysr.video.probe.plan_segments`.
        upscale_fn: see :data:`UpscaleFn`; e.g. ``lambda rgb: upscaler.upscale(rgb).image``.
        options: encoder settings; ``None`` = :class:`EncodeOptions` defaults.
        output: path for the NUT file; ``None`` keeps the bytes in memory (``.data``).
        temporal_strength: in [0, 1]; above 0 each upscaled frame is blended with the
            flow-warped previous output (:class:`raysr.video.temporal.TemporalBlender`, a new
            one per segment); its time counts in ``upscale_s``. 0 encodes ``upscale_fn``'s
            frames as they come. So that a segment's first frame is blended too, the frame
            before the segment (the previous segment's last, decoded from its keyframe) is
            upscaled first, not encoded, to prime the blender: segments stay independent, and
            one segment's output does not depend on how the video was cut into workers.
        warm_up_fn: what upscales that priming frame; ``None`` = ``upscale_fn`` (a caller
            that counts frames inside ``upscale_fn`` passes a variant that does not count).

    Raises:
        VideoError: ``corrupt`` (decode failed or frames missing), ``bad_upscale_output``,
            ``encode_failed``. Errors of ``upscale_fn`` propagate with a note naming the frame.
    """
    options = options or EncodeOptions()
    info = segment.info
    conversion = plan_conversion(info.pix_fmt, info.height, info.color, choose_pix_fmt(options, info.pix_fmt))
    target = io.BytesIO() if output is None else str(output)
    encoder = _Encoder(target, options, conversion, info, str(source), f"{source} segment {segment.index}")
    blender = TemporalBlender(temporal_strength) if temporal_strength != 0 else None  # checks the range
    frames = 0
    decode_s = upscale_s = 0.0

    def decoded() -> Iterator[tuple[np.ndarray, int]]:
        nonlocal decode_s
        mark = time.perf_counter()
        for frame in _frames(source, segment):
            rgb = frame_to_rgb(frame, conversion)
            decode_s += time.perf_counter() - mark
            yield rgb, frame.pts
            mark = time.perf_counter()

    if blender is not None:
        started = time.perf_counter()
        previous = _frame_before(source, segment)
        if previous is not None:
            rgb = frame_to_rgb(previous, conversion)
            blender(rgb, encoder.check((warm_up_fn or upscale_fn)(rgb)))
        upscale_s += time.perf_counter() - started
    # Decode runs ahead and encode behind the model, each in a thread (raysr.video._overlap).
    sink = BackgroundSink(lambda item: encoder.encode(*item))
    try:
        for rgb, pts in prefetch(decoded):
            started = time.perf_counter()
            try:
                upscaled = upscale_fn(rgb)
            except Exception as error:
                error.add_note(f"while upscaling {source}, segment {segment.index}, frame pts {pts} "
                               f"({float(pts * info.time_base):.3f} s)")
                raise
            if blender is not None:
                upscaled = blender(rgb, encoder.check(upscaled))
            upscale_s += time.perf_counter() - started
            sink.put((upscaled, pts))
            frames += 1
        sink.close()
        encoder.close()
    finally:
        sink.stop()
        encoder.abort()
    if frames != segment.frame_count:
        raise VideoError("corrupt", f"{source}: segment {segment.index} ({segment.start_s:.3f}–{segment.end_s:.3f} s) "
                         f"decoded {frames} frames, the file has {segment.frame_count} there; the stream is "
                         "damaged in that range: re-copy the file or remux it and retry", source)
    return EncodedSegment(
        segment=segment,
        path=None if output is None else str(output),
        data=target.getvalue() if isinstance(target, io.BytesIO) else None,
        frames=frames,
        width=encoder.width,
        height=encoder.height,
        pix_fmt=conversion.output_pix_fmt,
        codec=options.codec,
        notes=conversion.notes + ((temporal_note(temporal_strength),) if blender is not None else ()),
        decode_s=decode_s,
        upscale_s=upscale_s,
        encode_s=sink.seconds,
    )


def stored_pts_offset(info: VideoInfo) -> int:
    """Ticks added to every pts in a segment file (and removed by the join).

    Muxers shift a stream whose first DTS is negative (B-frame delay makes it so
    when a segment starts at pts 0); an offset larger than the whole video's span
    keeps every DTS positive, so the stored timestamps are the input's plus this.
    """
    return (info.end_pts - info.first_pts) + max(0, -info.first_pts) + 1


class _SeekMissed(Exception):
    """The demuxer's seek landed after the segment's keyframe (inexact index)."""


def _frames(source: object, segment: Segment) -> Iterator[av.VideoFrame]:
    """Decoded frames with ``start_pts <= pts < end_pts``, in presentation order.

    Raises:
        VideoError: ``bad_timestamps`` when a frame's pts is not after the one before: the
        container does not say when reordered frames show (H.264 with B-frames in AVI), and
        the segment's muxer would refuse the frames with a bare "Invalid argument".
    """
    previous = None
    for frame in _frames_as_stored(source, segment):
        if previous is not None and frame.pts <= previous:
            raise VideoError("bad_timestamps", f"{source}: frame timestamps go backwards in segment {segment.index} "
                             f"({previous} then {frame.pts}): the container does not store when reordered frames "
                             "show (H.264 with B-frames in .avi does not); re-encode or remux it into .mkv or "
                             ".mp4 with a tool that regenerates timestamps (e.g. FFmpeg) and retry", source)
        previous = frame.pts
        yield frame


def _frames_as_stored(source: object, segment: Segment) -> Iterator[av.VideoFrame]:
    try:
        yield from _decode_range(source, segment, seek=segment.start_pts > segment.info.first_pts)
    except _SeekMissed:  # rare: formats without an exact index; scan from the beginning instead
        yield from _decode_range(source, segment, seek=False)


def _frame_before(source: object, segment: Segment) -> av.VideoFrame | None:
    """The last frame shown before ``segment`` (``None`` for the first segment, or when the
    demuxer cannot seek back): decoded from the keyframe before the segment's start."""
    if segment.start_pts <= segment.info.first_pts:
        return None
    last = None
    with av.open(str(source), "r") as container, decoding(source, f"before segment {segment.index}"):
        stream = container.streams[segment.info.stream_index]
        stream.thread_type = "AUTO"
        container.seek(segment.start_pts - 1, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):  # presentation order
            if frame.pts is None:
                continue
            if frame.pts >= segment.start_pts:
                break
            last = frame
    return last


def _decode_range(source: object, segment: Segment, seek: bool) -> Iterator[av.VideoFrame]:
    start, end = segment.start_pts, segment.end_pts
    with av.open(str(source), "r") as container, decoding(source, f"in segment {segment.index}"):
        stream = container.streams[segment.info.stream_index]
        stream.thread_type = "AUTO"
        if seek:
            container.seek(start, stream=stream, backward=True, any_frame=False)
        started = past_end = False
        for packet in container.demux(stream):
            if packet.size == 0:  # the end-of-file flush marker (flushed below), or an empty placeholder
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if not started:
                if packet.is_keyframe and stamp == start:
                    started = True
                elif seek and stamp is not None and stamp > start:
                    raise _SeekMissed
                else:
                    continue
            if end is not None and stamp is not None and stamp >= end:
                if packet.is_keyframe:
                    past_end = True  # feed it: open-GOP leading frames before `end` follow it
                elif past_end:
                    break
            yield from _in_range(stream.decode(packet), start, end)
        yield from _in_range(stream.decode(None), start, end)


def _in_range(frames: list[av.VideoFrame], start: int, end: int | None) -> Iterator[av.VideoFrame]:
    for frame in frames:
        if frame.pts is not None and frame.pts >= start and (end is None or frame.pts < end):
            yield frame


class _Encoder:
    """A NUT muxer with one video encoder, opened on the first frame (its size comes from the model)."""

    def __init__(self, target: str | io.BytesIO, options: EncodeOptions, conversion: FrameConversion,
                 info: VideoInfo, source: str, label: str) -> None:
        self.target, self.options, self.conversion, self.info = target, options, conversion, info
        self.source, self.label = source, label
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.width = self.height = 0

    def _open(self, width: int, height: int) -> None:
        fmt = av.VideoFormat(self.conversion.output_pix_fmt)
        step_w, step_h = (next(f for f in (4, 2, 1) if f == 1 or chroma(f) == 1)
                          for chroma in (fmt.chroma_width, fmt.chroma_height))
        if width % step_w or height % step_h:
            raise VideoError("bad_upscale_output", f"{self.label}: upscaled frames are {width}x{height}, but "
                             f"{fmt.name} needs sizes divisible by {step_w}x{step_h}: pick an outscale that "
                             "gives such sizes, or a 4:4:4 EncodeOptions.pix_fmt", self.source)
        self.width, self.height = width, height
        info, codec = self.info, self.options
        self.container = av.open(self.target, "w", format=SEGMENT_FORMAT)
        stream = self.container.add_stream(codec.codec, rate=info.average_rate or None)
        stream.width, stream.height, stream.pix_fmt = width, height, fmt.name
        stream.time_base = info.time_base
        context = stream.codec_context
        context.time_base = info.time_base
        if info.average_rate:
            context.framerate = info.average_rate
        if info.sample_aspect_ratio:
            context.sample_aspect_ratio = info.sample_aspect_ratio
        tags = self.conversion.tags
        context.colorspace, context.color_range = tags.colorspace, tags.color_range
        context.color_primaries, context.color_trc = tags.color_primaries, tags.color_trc
        context.thread_count = codec.threads
        context.options = codec.codec_options()
        self.stream = stream

    def check(self, rgb: object) -> np.ndarray:
        """``rgb`` if it is an (H, W, 3) RGB array of the conversion's dtype; else ``bad_upscale_output``."""
        dtype = self.conversion.dtype
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != dtype:
            got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise VideoError("bad_upscale_output", f"{self.label}: the upscale callable returned {got}; "
                             f"expected an (H, W, 3) {dtype} RGB array", self.source)
        return rgb

    def encode(self, rgb: object, pts: int) -> None:
        rgb = self.check(rgb)
        if self.stream is None:
            self._open(rgb.shape[1], rgb.shape[0])
        elif rgb.shape[:2] != (self.height, self.width):
            raise VideoError("bad_upscale_output", f"{self.label}: frame at pts {pts} upscaled to "
                             f"{rgb.shape[1]}x{rgb.shape[0]}, earlier frames to {self.width}x{self.height}; "
                             "every frame must come out the same size", self.source)
        frame = rgb_to_frame(rgb, self.conversion)
        frame.pts, frame.time_base = pts + stored_pts_offset(self.info), self.info.time_base
        self._mux(frame)

    def _mux(self, frame: av.VideoFrame | None) -> None:
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except av.error.FFmpegError as error:
            if refused_by_store(error):  # a full disk, not the encoder: the caller judges it
                raise
            raise VideoError("encode_failed", f"{self.label}: the {self.options.codec} encoder failed "
                             f"({error}); check EncodeOptions (codec, preset, pix_fmt)", self.source) from error

    def close(self) -> None:
        if self.stream is not None:
            self._mux(None)
        if self.container is not None:
            self.container.close()
            self.container = None

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
                pass
            self.container = None
