"""Driver side: probe a video and split it into independently decodable segments.

The probe demuxes every packet without decoding (cheap: it reads the file once)
to find the video stream's timestamps and keyframes, checks the file against its
own header (truncation), decodes one frame for the colour tags, display matrix
and pixel format, and returns a small frozen :class:`VideoInfo`. A
:class:`Segment` is a half-open range of presentation timestamps starting at a
keyframe; it carries its ``VideoInfo`` so an actor needs nothing else.
"""

from __future__ import annotations

import math
import os
from array import array
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from raysr.video.errors import VideoError, classify_open_error, decoding, mp4_cut_off, truncated_mp4
from raysr.video.frames import ColorTags, frame_to_rgb, plan_conversion

_DISPLAYMATRIX = "DISPLAYMATRIX"


@dataclass(frozen=True)
class StreamInfo:
    """One input stream other than the processed video stream (copied by the join)."""

    index: int
    type: str        # audio | subtitle | data | attachment | video (extra video streams)
    codec: str
    packets: int
    start_s: float | None
    language: str | None


@dataclass(frozen=True)
class VideoInfo:
    """What the segments, the join and the verification need to know about one input.

    Timestamps are in the video stream's ``time_base`` (ticks). ``frame_count`` counts
    frames from the first keyframe on (``skipped_leading_frames`` before it cannot be decoded).
    """

    path: str
    container: str
    stream_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    average_rate: Fraction | None
    frame_count: int
    first_pts: int
    end_pts: int                 # last frame's pts + its duration
    last_frame_duration: int
    keyframes: int
    is_vfr: bool
    sample_aspect_ratio: Fraction | None
    display_matrix: tuple[int, ...] | None
    rotation: int                # counter-clockwise degrees the player applies
    color: ColorTags
    interlaced: bool
    streams: tuple[StreamInfo, ...]
    chapters: int
    skipped_leading_frames: int = 0

    @property
    def duration_s(self) -> float:
        return float((self.end_pts - self.first_pts) * self.time_base)

    @property
    def start_s(self) -> float:
        return float(self.first_pts * self.time_base)


@dataclass(frozen=True)
class Segment:
    """Frames with ``start_pts <= pts < end_pts`` of one video (``end_pts=None``: to the end).

    ``start_pts`` is a keyframe's pts, so the segment decodes on its own.
    """

    index: int
    start_pts: int
    end_pts: int | None
    frame_count: int
    info: VideoInfo

    @property
    def start_s(self) -> float:
        return float(self.start_pts * self.info.time_base)

    @property
    def end_s(self) -> float:
        end = self.info.end_pts if self.end_pts is None else self.end_pts
        return float(end * self.info.time_base)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Probe ``path``; raises :class:`VideoError` for anything that cannot be upscaled."""
    return _scan(path)[0]


def plan_segments(path: str | os.PathLike[str], target_seconds: float = 10.0) -> list[Segment]:
    """Split a video at keyframes into segments of about ``target_seconds`` each.

    A segment ends at the first keyframe at least ``target_seconds`` after its
    start, so segments are never shorter than that (but the last) and are longer
    when keyframes are sparse. ``math.inf`` gives one segment.

    Example:
        >>> segments = plan_segments("clip.mp4", target_seconds=2.0)  # doctest: +SKIP
        >>> [s.frame_count for s in segments]  # doctest: +SKIP
        [48, 48, 24]
    """
    if not target_seconds > 0:
        raise ValueError(f"target_seconds must be > 0 (math.inf for one segment), got {target_seconds!r}")
    info, keyframes, pts = _scan(path)
    target = math.inf if math.isinf(target_seconds) else target_seconds / info.time_base
    starts = [keyframes[0]]
    for keyframe in keyframes[1:]:
        if keyframe - starts[-1] >= target:
            starts.append(keyframe)
    bounds = np.searchsorted(pts, np.asarray(starts + [pts[-1] + 1]))
    return [
        Segment(index, int(start), int(starts[index + 1]) if index + 1 < len(starts) else None,
                int(bounds[index + 1] - bounds[index]), info)
        for index, start in enumerate(starts)
    ]


def frame_near(source: str | os.PathLike[str] | BinaryIO, at_s: float | None = None, *,
               upright: bool = False) -> tuple[np.ndarray, float]:
    """The frame of the video stream shown nearest ``at_s``, and its time.

    Args:
        source: a path, or a seekable binary file object (an S3 object opened with pyarrow).
        at_s: presentation time in seconds, as PyAV's ``frame.time`` counts it (the stream's
            own start included); ``None``: the middle of the stream.
        upright: turn the frame as a player shows it (its display rotation, to the nearest
            quarter turn); otherwise pixels are as stored, as raysr's models see them. The
            sample aspect ratio is never applied: pixels stay 1:1 with the file's.

    Returns:
        (H, W, 3) RGB, uint8 for 8-bit video and uint16 (full 0–65535) for deeper, converted
        with the matrix and range the video is tagged with (:func:`raysr.video.frames.frame_to_rgb`);
        and the frame's presentation time in seconds.

    Raises:
        VideoError: the file cannot be opened or decoded, or has no video frame (its ``kind`` says which).

    Example:
        >>> before, at_s = frame_near("in/tape.mkv")        # doctest: +SKIP
        >>> after, _ = frame_near("out/tape.mkv", at_s)    # the same moment of the upscaled copy
    """
    is_path = isinstance(source, (str, os.PathLike))
    name = source if is_path else getattr(source, "name", "<file object>")
    opened = _open(source) if is_path else _open_file(source)
    with opened as container, decoding(name, "at a sampled frame"):
        stream = _video_stream(name, container)
        if at_s is None:
            start_s = float((stream.start_time or 0) * stream.time_base)
            duration_s = (float(stream.duration * stream.time_base) if stream.duration
                          else (container.duration or 0) / av.time_base)
            at_s = start_s + duration_s / 2
        try:  # to the keyframe at or before at_s; a source that cannot seek is decoded from its start
            container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
        except av.error.FFmpegError:
            pass
        best: av.VideoFrame | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if best is None or abs(frame.time - at_s) < abs(best.time - at_s):
                best = frame
            if frame.time > at_s:  # frames come in presentation order: later ones are further away
                break
        if best is None:
            raise VideoError("zero_frames", f"{name}: no video frame could be decoded near {at_s:.3f} s; the "
                             "video stream is empty or damaged", name)
        conversion = plan_conversion(best.format.name, best.height, ColorTags.of(best), best.format.name)
        rgb = frame_to_rgb(best, conversion)
        if upright:
            rgb = _upright(rgb, best.rotation)
        return rgb, float(best.time)


def _upright(rgb: np.ndarray, rotation_deg: float) -> np.ndarray:
    """``rgb`` turned as a player shows it. ``rotation_deg`` is the display matrix's angle as
    PyAV's ``frame.rotation`` gives it (``av_display_rotation_get``): counter-clockwise, the way
    FFmpeg's own autorotate turns the picture (-90, a phone's portrait clip: a clockwise turn)."""
    quarter_turns = round(rotation_deg / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


# -- the scan ---------------------------------------------------------------------------
def _open(path: object) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoError("not_found", f"{path}: no such file; check the path or the listing", path)
    if os.path.getsize(path) == 0:
        raise VideoError("empty", f"{path}: the file is empty (0 bytes); copy it again from the source", path)
    try:
        container = av.open(str(path), "r")
    except Exception as error:  # noqa: BLE001 - any open failure is a property of the file
        raise classify_open_error(path, error) from error
    if mp4_cut_off(path):  # FFmpeg opens an MP4 cut inside its index, minus the tracks it lost
        container.close()
        raise truncated_mp4(path)
    return container


def _open_file(handle: BinaryIO) -> av.container.InputContainer:
    try:
        return av.open(handle, "r")
    except Exception as error:  # noqa: BLE001 - any open failure is a property of the file
        raise classify_open_error(getattr(handle, "name", "<file object>"), error) from error


def _video_stream(path: object, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        found = ", ".join(f"{s.type}:{s.codec_context.name if s.codec_context else '?'}"
                          for s in container.streams) or "no streams"
        raise VideoError("no_video_stream", f"{path}: has no video stream ({found}); only video files "
                         "can be upscaled here, list images and audio elsewhere", path)
    stream = candidates[0]
    if stream.codec_context is None or not stream.codec_context.is_decoder:
        raise VideoError("unsupported_codec", f"{path}: this FFmpeg build has no decoder for the video "
                         f"codec (tag {stream.codec_tag!r}); transcode it to H.264 or FFV1 first", path)
    return stream


@dataclass
class _Packets:
    """What one demux pass (no decoding) found."""

    pts: array                              # video pts from the first keyframe on, decode order
    durations: array
    keyframes: list[int]
    video_packets: int = 0
    before_keyframe: int = 0                # video packets before the first keyframe
    others: dict[int, list] = field(default_factory=dict)  # stream index → [packets, first timestamp (s)]
    data_end_s: float = 0.0                 # the latest end of any non-video packet


def _demux(path: object, container: av.container.InputContainer, vindex: int) -> _Packets:
    found = _Packets(array("q"), array("q"), [], others={s.index: [0, None] for s in container.streams
                                                          if s.index != vindex})
    with decoding(path, "while reading packets"):
        for packet in container.demux():
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.stream_index != vindex:
                record = found.others[packet.stream_index]
                record[0] += 1
                if stamp is not None:
                    seconds = float(stamp * packet.time_base)
                    record[1] = seconds if record[1] is None else min(record[1], seconds)
                    end = seconds + float((packet.duration or 0) * packet.time_base)
                    found.data_end_s = max(found.data_end_s, end)
                continue
            found.video_packets += 1
            if stamp is None:
                raise VideoError("corrupt", f"{path}: video packets without timestamps; remux it "
                                 "into .mkv or .mp4 (which store them) and retry", path)
            if packet.is_keyframe:
                found.keyframes.append(stamp)
            if not found.keyframes:
                found.before_keyframe += 1
                continue
            found.pts.append(stamp)
            found.durations.append(packet.duration or 0)
    return found


def _scan(path: str | os.PathLike[str]) -> tuple[VideoInfo, np.ndarray, np.ndarray]:
    """(info, keyframe pts sorted, frame pts sorted): every packet read once, one frame decoded."""
    with _open(path) as container:
        stream = _video_stream(path, container)
        vindex, tb = stream.index, stream.time_base
        rate = stream.average_rate or stream.guessed_rate  # read before demuxing: FFmpeg updates it while reading
        sar = stream.codec_context.sample_aspect_ratio
        rotate_tag = int(float(stream.metadata.get("rotate", 0) or 0))
        codec = stream.codec_context.name
        # 1. Demux everything, decode nothing.
        found = _demux(path, container, vindex)
        if not found.pts:
            kind = "zero_frames" if not found.video_packets else "corrupt"
            raise VideoError(kind, f"{path}: the video stream has no decodable frames ({found.video_packets} "
                             "packets, no keyframe); the file holds no usable video", path)
        # 2. Frames in presentation order; those shown before the first keyframe cannot be decoded.
        pts = np.frombuffer(found.pts, dtype=np.int64)
        order = np.argsort(pts, kind="stable")
        keep = pts[order] >= found.keyframes[0]
        sorted_pts = pts[order][keep]
        last_packet_duration = int(np.frombuffer(found.durations, dtype=np.int64)[order][keep][-1])
        if np.any(np.diff(sorted_pts) <= 0):
            raise VideoError("corrupt", f"{path}: several video frames share a timestamp; remux it "
                             "(e.g. into .mkv) so each frame has its own, then retry", path)
        # 3. Is the file shorter than its header says?
        last_duration = _last_duration(sorted_pts, last_packet_duration, rate, tb)
        end_pts = int(sorted_pts[-1]) + last_duration
        _check_truncation(path, container, stream, found.video_packets,
                          max(found.data_end_s, float(end_pts * tb)))
        # 4. One decoded frame for what only the decoder knows.
        frame = _first_frame(path)
        chapters, container_name = len(container.chapters()), container.format.name
        streams = tuple(
            StreamInfo(s.index, s.type, (s.codec_context.name if s.codec_context else getattr(s, "name", None)) or "?",
                       found.others[s.index][0], found.others[s.index][1], s.language)
            for s in container.streams if s.index != vindex
        )
    keyframes = np.unique(np.asarray([k for k in found.keyframes if k >= sorted_pts[0]], dtype=np.int64))
    diffs = np.diff(sorted_pts)
    matrix = _display_matrix(frame)
    info = VideoInfo(
        path=str(path),
        container=container_name,
        stream_index=vindex,
        codec=codec,
        width=frame.width,
        height=frame.height,
        pix_fmt=frame.format.name,
        bit_depth=int(frame.format.components[0].bits),
        time_base=tb,
        average_rate=rate,
        frame_count=len(sorted_pts),
        first_pts=int(sorted_pts[0]),
        end_pts=end_pts,
        last_frame_duration=last_duration,
        keyframes=len(keyframes),
        is_vfr=bool(len(diffs) and diffs.max() - diffs.min() > 1),
        sample_aspect_ratio=sar if sar and sar.numerator else None,
        display_matrix=matrix,
        rotation=int(frame.rotation) if matrix else rotate_tag,
        color=ColorTags.of(frame),
        interlaced=bool(frame.interlaced_frame),
        streams=streams,
        chapters=chapters,
        skipped_leading_frames=found.video_packets - len(sorted_pts),
    )
    return info, keyframes, sorted_pts


def _last_duration(sorted_pts: np.ndarray, packet_duration: int, rate: Fraction | None, tb: Fraction) -> int:
    if packet_duration > 0:
        return packet_duration
    if len(sorted_pts) > 1:
        return int(np.median(np.diff(sorted_pts)))
    return max(1, round(1 / (rate * tb))) if rate else 1


def _check_truncation(path: object, container: av.container.InputContainer, stream, packets: int,
                      data_end_s: float) -> None:
    declared = stream.frames
    if declared and packets < declared:
        raise VideoError("truncated", f"{path}: the header lists {declared} video frames but only {packets} "
                         "are in the file; it was cut off: copy it again from the source", path)
    if container.duration:
        header_end = (container.duration + (container.start_time or 0)) / 1e6
        if header_end - data_end_s > max(0.25, 0.01 * container.duration / 1e6):
            raise VideoError("truncated", f"{path}: the header says it lasts to {header_end:.2f} s but the data "
                             f"stops at {data_end_s:.2f} s; it was cut off: copy it again from the source", path)


def _first_frame(path: object) -> av.VideoFrame:
    with av.open(str(path), "r") as container, decoding(path, "at the first frame"):
        stream = _video_stream(path, container)
        for frame in container.decode(stream):
            return frame
    raise VideoError("zero_frames", f"{path}: no video frame could be decoded; the video stream is empty "
                     "or damaged from its start", path)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    for side_data in frame.side_data or ():
        if getattr(side_data.type, "name", "") == _DISPLAYMATRIX:
            values = tuple(int(v) for v in np.frombuffer(bytes(side_data), dtype="=i4"))
            return values if len(values) == 9 else None
    return None
