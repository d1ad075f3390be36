"""Check an output against its input before it is marked ok.

Reads both files' packets (no decoding, except one output frame for the display
rotation, or all of them with ``decode=True``) and compares: frame count, every
frame's presentation time (so variable frame rate is checked frame by frame),
duration, the start offset of every copied stream against the video, the copied
streams' packet bytes (sha256: audio must be bit-identical), and the video
metadata raysr keeps (rotation, sample aspect ratio, colour tags).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from raysr.video.join import JoinResult
from raysr.video.probe import VideoInfo

_UNSPECIFIED_MATRICES = (2, 3)


@dataclass(frozen=True)
class StreamCheck:
    """One copied stream: packets and bytes in and out, start offset against the video."""

    input_index: int
    output_index: int
    type: str
    packets_in: int
    packets_out: int
    sha256_in: str
    sha256_out: str
    offset_in_s: float | None    # this stream's first timestamp minus the video's
    offset_out_s: float | None


@dataclass(frozen=True)
class VideoCheck:
    """Input vs output; ``ok`` when ``problems`` is empty.

    ``timeline_shift_s`` is a shift the muxer applied to every stream alike
    (Matroska cannot store the negative start of an MP4 whose audio has a
    priming edit list); the offsets between streams are what must be kept.
    """

    problems: tuple[str, ...]
    frames_in: int
    frames_out: int
    duration_in_s: float
    duration_out_s: float
    video_start_in_s: float
    video_start_out_s: float
    timeline_shift_s: float
    max_pts_error_s: float
    streams: tuple[StreamCheck, ...]
    rotation_out: int
    sample_aspect_ratio_out: Fraction | None
    pix_fmt_out: str
    frames_decoded: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Packets:
    type: str
    time_base: Fraction
    pts: list[int] = field(default_factory=list)
    last_duration: int = 0
    count: int = 0
    digest: object = field(default_factory=hashlib.sha256)

    def start_s(self) -> float | None:
        return float(min(self.pts) * self.time_base) if self.pts else None


def _read(path: object, wanted: set[int]) -> dict[int, _Packets]:
    """Per wanted stream: timestamps, count, sha256 of the packet bytes (no decoding)."""
    with av.open(str(path), "r") as container:
        found = {s.index: _Packets(s.type, s.time_base) for s in container.streams if s.index in wanted}
        latest: dict[int, int] = {}
        for packet in container.demux(*[container.streams[i] for i in found]):
            if not packet.size:
                continue
            record = found[packet.stream_index]
            record.count += 1
            record.digest.update(bytes(packet))
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:
                record.pts.append(stamp)
                if stamp >= latest.get(packet.stream_index, stamp):
                    latest[packet.stream_index] = stamp
                    record.last_duration = packet.duration or 0
    return found


def verify_video(source: str | os.PathLike[str], info: VideoInfo, join: JoinResult, decode: bool = False) -> VideoCheck:
    """Compare ``join.output`` with ``source`` (probed as ``info``); mismatches go to ``problems``.

    Args:
        decode: also decode every output frame and count them (a full decode at output size).
    """
    video_in, video_out = info.stream_index, join.stream_map[info.stream_index]
    inputs, outputs = _read(source, set(join.stream_map)), _read(join.output, set(join.stream_map.values()))
    vin, vout = inputs[video_in], outputs[video_out]
    pts_in = np.sort(np.asarray([p for p in vin.pts if p >= info.first_pts], dtype=np.int64))
    pts_out = np.sort(np.asarray(vout.pts, dtype=np.int64))
    problems: list[str] = []
    if len(pts_out) != info.frame_count or len(pts_in) != info.frame_count:
        problems.append(f"output has {len(pts_out)} video frames, input {len(pts_in)} (probe: {info.frame_count})")
    # 1. Timestamps: one tick of the coarser time base is the most any may move.
    tolerance = float(max(vin.time_base, vout.time_base))
    start_in = float(info.first_pts * info.time_base)
    start_out = float(pts_out[0] * vout.time_base) if len(pts_out) else start_in
    shift, error = start_out - start_in, 0.0
    if len(pts_in) == len(pts_out) and len(pts_out):
        error = float(np.max(np.abs(pts_out * float(vout.time_base) - shift - pts_in * float(vin.time_base))))
        if error > tolerance:
            problems.append(f"frame timestamps moved by up to {error:.6f} s (allowed {tolerance:.6f} s)")
    duration_in = info.duration_s
    duration_out = 0.0
    if len(pts_out):
        last = vout.last_duration or round(info.last_frame_duration * info.time_base / vout.time_base)
        duration_out = float((int(pts_out[-1]) - int(pts_out[0]) + last) * vout.time_base)
    if abs(duration_out - duration_in) > 2 * tolerance:
        problems.append(f"video lasts {duration_out:.4f} s, input {duration_in:.4f} s")
    # 2. Copied streams: the same bytes, the same offset against the video.
    streams = []
    for index_in, index_out in join.stream_map.items():
        if index_in == video_in or index_in not in inputs or index_out not in outputs:
            continue
        a, b = inputs[index_in], outputs[index_out]
        offset_in = None if a.start_s() is None else a.start_s() - start_in
        offset_out = None if b.start_s() is None else b.start_s() - start_out
        check = StreamCheck(index_in, index_out, a.type, a.count, b.count, a.digest.hexdigest(),
                            b.digest.hexdigest(), offset_in, offset_out)
        streams.append(check)
        if (a.count, check.sha256_in) != (b.count, check.sha256_out):
            problems.append(f"{a.type} stream #{index_in}: {b.count} of {a.count} packets copied, or their bytes differ")
        allowed = tolerance + float(max(a.time_base, b.time_base))
        if offset_in is not None and (offset_out is None or abs(offset_out - offset_in) > allowed):
            problems.append(f"{a.type} stream #{index_in} starts {offset_out} s from the video, input {offset_in:.6f} s")
    # 3. What a player reads from the video stream.
    rotation, sar, pix_fmt, decoded = _video_metadata(join, info, problems, decode)
    return VideoCheck(
        problems=tuple(problems), frames_in=len(pts_in), frames_out=len(pts_out),
        duration_in_s=duration_in, duration_out_s=duration_out,
        video_start_in_s=start_in, video_start_out_s=start_out, timeline_shift_s=shift,
        max_pts_error_s=error, streams=tuple(streams), rotation_out=rotation,
        sample_aspect_ratio_out=sar, pix_fmt_out=pix_fmt, frames_decoded=decoded,
    )


def _video_metadata(join: JoinResult, info: VideoInfo, problems: list[str], decode: bool):
    """(rotation, SAR, pix_fmt, frames decoded or None); appends what differs from the input."""
    with av.open(join.output, "r") as container:
        stream = container.streams[join.stream_map[info.stream_index]]
        context = stream.codec_context
        sar = context.sample_aspect_ratio if context.sample_aspect_ratio and context.sample_aspect_ratio.numerator else None
        rotation, decoded = 0, 0
        for frame in container.decode(stream):
            if decoded == 0:
                rotation = int(frame.rotation)
            decoded += 1
            if not decode:
                break
        tags = (context.color_primaries, context.color_trc, context.colorspace)
        pix_fmt = context.pix_fmt or ""
    expected = (info.color.color_primaries, info.color.color_trc, info.color.colorspace)
    if rotation != info.rotation:
        problems.append(f"display rotation {rotation}°, input {info.rotation}°")
    if sar != info.sample_aspect_ratio:
        problems.append(f"sample aspect ratio {sar}, input {info.sample_aspect_ratio}")
    if tags[:2] != expected[:2] or (expected[2] not in _UNSPECIFIED_MATRICES and tags[2] != expected[2]):
        problems.append(f"colour primaries/transfer/matrix {tags}, input {expected}")
    if decode and decoded != info.frame_count:
        problems.append(f"{decoded} output frames decode, {info.frame_count} expected")
    return rotation, sar, pix_fmt, decoded if decode else None
