"""Driver (or any one worker) side: concatenate encoded segments into the final file.

Nothing is re-encoded. The segments' video packets are remuxed in order with
their presentation timestamps (the input frames' own) and fresh decode
timestamps computed over the whole video (each segment's encoder started its
own DTS run, which would collide at the boundaries). Every audio track, the
subtitles the output container can hold, attachments (Matroska) and chapters
are copied from the input as packets; packets from all sources are merged by
time so the file is interleaved, and nothing is held in memory beyond one
packet per source plus the list of frame timestamps.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import av
import numpy as np

from raysr.sinks.write import refused_by_store
from raysr.video.errors import VideoError
from raysr.video.probe import VideoInfo
from raysr.video.segment import EncodedSegment, stored_pts_offset

# Tags that describe the old encode or are recomputed by the muxer: not copied.
_STALE_TAGS = ("encoder", "rotate", "duration", "_statistics", "number_of_", "bps", "major_brand",
               "minor_version", "compatible_brands", "vendor_id")


@dataclass(frozen=True)
class JoinResult:
    """What the join wrote.

    Attributes:
        output: the file written.
        format: the container format (``mp4``, ``matroska`` …).
        stream_map: input stream index → output stream index, the video included.
        dropped: input stream index → why it was not copied.
        chapters: chapters copied.
        frames / width / height / codec / pix_fmt: the video written.
        reorder_depth: frames of decode delay (B-frames) used for the new DTS.
    """

    output: str
    format: str
    stream_map: dict[int, int]
    dropped: dict[int, str]
    chapters: int
    frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str
    reorder_depth: int
    notes: tuple[str, ...] = field(default=())


def join_segments(
    source: str | os.PathLike[str],
    segments: Sequence[EncodedSegment],
    output: str | os.PathLike[str],
    format: str | None = None,
) -> JoinResult:
    """Concatenate ``segments`` (all of one plan) and copy ``source``'s other streams into ``output``.

    Args:
        source: the input video the segments were made from.
        segments: every segment of the plan, any order (sorted by index here).
        output: the file to write; its extension picks the container unless ``format`` is given.
        format: FFmpeg muxer name (``mp4``, ``matroska``, ``mov``) to override the extension.

    Raises:
        VideoError: ``join_failed`` (missing or mismatched segments, a container that cannot
            hold the video codec), ``unsupported_stream`` (an audio track the container cannot hold).
    """
    ordered = _check_segments(source, segments)
    info = ordered[0].segment.info
    # 1. Every frame's pts from the segment files: the new DTS and durations come from them.
    all_pts, depth = _scan_segments(source, ordered, info)
    sorted_pts = np.sort(all_pts)
    durations = np.append(np.diff(sorted_pts), info.last_frame_duration)
    try:
        out = av.open(str(output), "w", format=format)
    except (ValueError, av.error.FFmpegError) as error:
        if refused_by_store(error):  # a read-only or full output, not the name
            raise
        raise VideoError("join_failed", f"{output}: no container for this name ({error}); use .mkv, .mp4 or "
                         ".mov, or pass format=", output) from error
    muxer = out.format.name
    first = ordered[0].open()
    try:
        with av.open(str(source), "r") as container:
            # 2. Streams: the video from segment 0's header, the rest from the input.
            out_video = _add_video(out, first.streams.video[0], container.streams[info.stream_index], info, output)
            stream_map, dropped, copied = _add_other_streams(out, container, info, source, output)
            stream_map[info.stream_index] = out_video.index
            chapters = container.chapters()
            if chapters:
                out.set_chapters(chapters)
            out.metadata.update(_fresh_tags(container.metadata))
            # 3. Packets from both, merged by time.
            video = _video_packets(ordered, info, out_video, sorted_pts, durations, depth)
            others = _copied_packets(container, copied)
            try:
                for _, _, packet in heapq.merge(video, others, key=lambda item: (item[0], item[1])):
                    out.mux(packet)
                out.close()
            except av.error.FFmpegError as error:
                if refused_by_store(error):  # a full disk, not the muxer: the caller judges it
                    raise
                raise VideoError("join_failed", f"{output}: the {muxer} muxer refused the streams "
                                 f"(FFmpeg: {error}); write .mkv, which holds every codec and layout",
                                 output) from error
    finally:
        first.close()
        try:
            out.close()
        except Exception:  # noqa: BLE001 - already closed, or already failing with the first error
            pass
    return JoinResult(
        output=str(output), format=muxer, stream_map=dict(sorted(stream_map.items())), dropped=dropped,
        chapters=len(chapters), frames=len(sorted_pts), width=ordered[0].width, height=ordered[0].height,
        codec=ordered[0].codec, pix_fmt=ordered[0].pix_fmt, reorder_depth=depth,
    )


def _add_other_streams(
    out: av.container.OutputContainer, container: av.container.InputContainer, info: VideoInfo,
    source: object, output: object,
) -> tuple[dict[int, int], dict[int, str], dict[int, av.stream.Stream]]:
    """(input → output index map, dropped index → reason, {input index: output stream} with packets)."""
    stream_map, dropped, copied = {}, {}, {}
    for stream in container.streams:
        if stream.index == info.stream_index:
            continue
        target, reason = _add_copy(out, stream, source, output)
        if target is None:
            dropped[stream.index] = reason
            continue
        stream_map[stream.index] = target.index
        if stream.type != "attachment":  # attachments live in the header, they have no packets
            copied[stream.index] = target
    return stream_map, dropped, copied


def _check_segments(source: object, segments: Sequence[EncodedSegment]) -> list[EncodedSegment]:
    if not segments:
        raise VideoError("join_failed", f"{source}: no segments to join; encode the plan's segments first", source)
    ordered = sorted(segments, key=lambda s: s.segment.index)
    info = ordered[0].segment.info
    indices = [s.segment.index for s in ordered]
    if indices != list(range(len(ordered))) or ordered[-1].segment.end_pts is not None:
        raise VideoError("join_failed", f"{source}: segments {indices} do not cover the plan (expected 0..n-1 "
                         "with the last one open-ended); encode the missing segments and join again", source)
    first = ordered[0]
    for encoded in ordered[1:]:
        if encoded.segment.info != info:
            raise VideoError("join_failed", f"{source}: segment {encoded.segment.index} comes from another probe "
                             "of the file (it changed?); plan and encode again", source)
        shape = (encoded.width, encoded.height, encoded.pix_fmt, encoded.codec)
        if shape != (first.width, first.height, first.pix_fmt, first.codec):
            raise VideoError("join_failed", f"{source}: segment {encoded.segment.index} is {shape}, segment 0 is "
                             f"{(first.width, first.height, first.pix_fmt, first.codec)}; encode every segment "
                             "with the same model and EncodeOptions", source)
    return ordered


def _scan_segments(source: object, ordered: list[EncodedSegment], info: VideoInfo) -> tuple[np.ndarray, int]:
    """Every frame's pts (input ticks, decode order) and the reorder depth D (B-frame delay)."""
    chunks, depth, extradata, previous_end = [], 0, None, None
    for encoded in ordered:
        with encoded.open() as container:
            stream = container.streams.video[0]
            if extradata is None:
                extradata = stream.codec_context.extradata
            elif stream.codec_context.extradata != extradata:
                raise VideoError("join_failed", f"{source}: segment {encoded.segment.index} has other codec headers "
                                 "than segment 0 (different encoder settings or versions); re-encode all "
                                 "segments with one setup", source)
            scale, offset = stream.time_base / info.time_base, stored_pts_offset(info)
            stamps = [packet.pts * scale - offset for packet in container.demux(stream) if packet.size]
        if any(s.denominator != 1 for s in stamps) or len(stamps) != encoded.segment.frame_count:
            raise VideoError("join_failed", f"{source}: segment {encoded.segment.index} holds {len(stamps)} "
                             f"frames (expected {encoded.segment.frame_count}) or inexact timestamps; "
                             "encode it again", source)
        pts = np.asarray([int(s) for s in stamps], dtype=np.int64)
        if previous_end is not None and pts.min() <= previous_end:
            raise VideoError("join_failed", f"{source}: segment {encoded.segment.index} overlaps the one before "
                             "it; plan and encode again", source)
        previous_end = int(pts.max())
        ranks = np.argsort(np.argsort(pts, kind="stable"), kind="stable")
        depth = max(depth, int(np.max(np.arange(len(pts)) - ranks)))
        chunks.append(pts)
    return np.concatenate(chunks), depth


def _video_packets(ordered: list[EncodedSegment], info: VideoInfo, out_stream: av.stream.Stream, sorted_pts: np.ndarray,
                   durations: np.ndarray, depth: int) -> Iterator[tuple[float, int, av.Packet]]:
    """Segment packets in decode order with pts kept and DTS_k = sorted_pts[k - D] (x264's own rule)."""
    step = max(1, int(sorted_pts[min(depth, len(sorted_pts) - 1)] - sorted_pts[0]) // max(depth, 1))
    tb = info.time_base
    index = 0
    for encoded in ordered:
        with encoded.open() as container:
            stream = container.streams.video[0]
            scale, offset = stream.time_base / tb, stored_pts_offset(info)
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                pts = int(packet.pts * scale) - offset
                dts = int(sorted_pts[index - depth]) if index >= depth else int(sorted_pts[0]) - (depth - index) * step
                packet.time_base = tb
                packet.pts, packet.dts = pts, dts
                packet.duration = int(durations[np.searchsorted(sorted_pts, pts)])
                packet.stream = out_stream
                index += 1
                yield float(dts * tb), 0, packet


def _copied_packets(container: av.container.InputContainer,
                    targets: dict[int, av.stream.Stream]) -> Iterator[tuple[float, int, av.Packet]]:
    if not targets:
        return
    streams = [container.streams[index] for index in targets]
    for packet in container.demux(*streams):
        stamp = packet.dts if packet.dts is not None else packet.pts
        if not packet.size or stamp is None:
            continue
        packet.stream = targets[packet.stream_index]
        yield float(stamp * packet.time_base), 1, packet


def _fresh_tags(tags: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in tags.items() if not key.lower().startswith(_STALE_TAGS)}


def _add_video(out: av.container.OutputContainer, template: av.stream.Stream, input_stream: av.stream.Stream,
               info: VideoInfo, output: object) -> av.stream.Stream:
    """The output video stream: segment 0's codec header, the input's timing, display matrix and tags."""
    try:
        stream = out.add_stream_from_template(template)
    except ValueError as error:
        raise VideoError("join_failed", f"{output}: the {out.format.name} container cannot hold "
                         f"{template.codec_context.name} video ({error}); write .mkv, or pick a codec it holds",
                         output) from error
    stream.time_base = info.time_base
    if info.average_rate:
        stream.codec_context.framerate = info.average_rate
    if info.display_matrix:
        stream.set_display_matrix(info.display_matrix)
    elif info.rotation:
        stream.set_display_rotation(info.rotation)
    stream.metadata.update(_fresh_tags(input_stream.metadata))
    stream.disposition = input_stream.disposition
    return stream


def _add_copy(out: av.container.OutputContainer, stream: av.stream.Stream, source: object,
              output: object) -> tuple[av.stream.Stream | None, str]:
    """(output stream, "") for a copied stream, or (None, reason) for a dropped one."""
    name = stream.codec_context.name if stream.codec_context else (getattr(stream, "name", None) or "no codec")
    if stream.type == "attachment":
        if out.format.name not in ("matroska", "webm"):
            return None, f"attachment ({stream.metadata.get('filename', '?')}) only fits in .mkv"
        target = out.add_attachment(stream.metadata.get("filename", f"attachment{stream.index}"),
                                    stream.mimetype or "application/octet-stream", stream.data)
        return target, ""
    if stream.type == "data":
        return None, f"data stream ({name}: timecode, chapter text track …) not copied; chapters are copied as chapters"
    if stream.type == "video":
        return None, f"extra video stream ({name}, cover art or another angle) not copied"
    try:
        target = out.add_stream_from_template(stream)
    except ValueError as error:
        if stream.type == "audio":
            raise VideoError("unsupported_stream", f"{source}: audio track #{stream.index} ({name}) cannot be "
                             f"copied into {out.format.name} ({error}); write .mkv (it holds any codec) or .mov",
                             output) from error
        return None, (f"{name} {stream.type} cannot be copied into {out.format.name}; write the input's "
                      "container type to keep it (or convert it separately)")
    target.metadata.update(_fresh_tags(stream.metadata))
    target.disposition = stream.disposition
    return target, ""
