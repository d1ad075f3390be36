"""One video on one machine: plan → segments (threads) → join → verify → publish.

The Ray job runs the same four steps with the segments on actors; this module
is the reference path (``raysr upscale`` on a video) and what tests exercise.
The output appears only after verification passed: the join writes a hidden
temporary file next to ``output`` and renames it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from raysr.sinks.write import partial_path
from raysr.video.errors import VideoError
from raysr.video.join import JoinResult, join_segments
from raysr.video.options import EncodeOptions
from raysr.video.probe import Segment, VideoInfo, plan_segments
from raysr.video.segment import EncodedSegment, UpscaleFn, encode_segment
from raysr.video.temporal import TEMPORAL_NOTE_PREFIX
from raysr.video.verify import VideoCheck, verify_video

TEMPORAL_NOTE = "frames upscaled independently (no temporal consistency pass)"


@dataclass(frozen=True)
class VideoResult:
    """An upscaled, verified video.

    Attributes:
        output: the published file.
        info: the input as probed.
        segments: how many segments were encoded.
        join / check: what the join wrote and how it compared with the input.
        notes: assumptions and losses, one line each (dropped streams, untagged colour …).
        plan_s / decode_s / upscale_s / encode_s / join_s / verify_s: seconds per phase
            (decode/upscale/encode summed over segments); wall_s: end to end.
    """

    output: str
    info: VideoInfo
    segments: int
    join: JoinResult
    check: VideoCheck
    notes: tuple[str, ...]
    plan_s: float
    decode_s: float
    upscale_s: float
    encode_s: float
    join_s: float
    verify_s: float
    wall_s: float

    @property
    def frames(self) -> int:
        return self.join.frames


def upscale_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    upscale_fn: UpscaleFn,
    options: EncodeOptions | None = None,
    target_seconds: float = 10.0,
    workers: int = 1,
    format: str | None = None,
    decode_check: bool = False,
    temporal_strength: float = 0.0,
) -> VideoResult:
    """Upscale ``source`` into ``output`` segment by segment, then join and verify.

    Args:
        upscale_fn: (H, W, 3) uint8|uint16 RGB → (H·s, W·s, 3) same dtype; called from
            ``workers`` threads at once when ``workers > 1`` (it must be thread-safe then).
        target_seconds: segment length (cut at the next keyframe); ``math.inf`` = one segment.
        workers: segments encoded at once in threads (PyAV and torch release the GIL).
        format: output muxer name; ``None`` = from the extension.
        decode_check: also decode the whole output while verifying.
        temporal_strength: in [0, 1]; above 0 each frame is blended with the flow-warped
            previous output to reduce flicker (within a segment: each segment's first
            frame is not blended, so ``workers`` never changes the output).

    Raises:
        VideoError: any input, encode or join failure (see ``kind``), and ``verify_failed``
            with the differences listed when the output does not match the input.

    Example:
        >>> import numpy as np
        >>> nearest2x = lambda rgb: rgb.repeat(2, axis=0).repeat(2, axis=1)
        >>> result = upscale_video("in.mp4", "out.mkv", nearest2x, target_seconds=5)  # doctest: +SKIP
        >>> result.check.ok, result.frames  # doctest: +SKIP
        (True, 1440)
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if not 0 <= temporal_strength <= 1:
        raise ValueError(f"temporal_strength must be in [0, 1] (0 = off), got {temporal_strength!r}")
    options = options or EncodeOptions()
    started = time.perf_counter()
    segments = plan_segments(source, target_seconds)
    info = segments[0].info
    plan_s = time.perf_counter() - started
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".raysr-segments-", dir=output.parent))
    try:
        encoded = _encode_all(source, segments, upscale_fn, options, work, workers, temporal_strength)
        result = finish_video(source, info, encoded, output, format=format, decode_check=decode_check)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return replace(result, plan_s=plan_s, wall_s=time.perf_counter() - started)


def finish_video(source: str | os.PathLike[str], info: VideoInfo, encoded: list[EncodedSegment],
                 output: str | os.PathLike[str], format: str | None = None, decode_check: bool = False) -> VideoResult:
    """Join encoded segments without re-encoding, verify against the input, publish ``output``.

    The segments may come from different machines (the Ray job encodes them on its
    actors); the output appears only when verification passed.

    Raises:
        VideoError: ``join_failed`` or ``verify_failed`` (with the differences listed).
    """
    started = time.perf_counter()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(output)  # format given: the muxer does not guess it from this name
    try:
        join = join_segments(source, encoded, partial, format=format or _format_for(output))
        join_s = time.perf_counter() - started
        mark = time.perf_counter()
        check = verify_video(source, info, join, decode=decode_check)
        verify_s = time.perf_counter() - mark
        if not check.ok:
            raise VideoError("verify_failed", f"{source}: the output does not match the input: "
                             f"{'; '.join(check.problems)}; nothing was written to {output}. Report this "
                             "with the file's `ffprobe` output", source)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    join = replace(join, output=str(output))
    return VideoResult(
        output=str(output), info=info, segments=len(encoded), join=join, check=check,
        notes=_notes(info, encoded, join, check), plan_s=0.0,
        decode_s=sum(e.decode_s for e in encoded), upscale_s=sum(e.upscale_s for e in encoded),
        encode_s=sum(e.encode_s for e in encoded), join_s=join_s, verify_s=verify_s,
        wall_s=time.perf_counter() - started,
    )


def _encode_all(source: object, segments: list[Segment], upscale_fn: UpscaleFn, options: EncodeOptions,
                work: Path, workers: int, temporal_strength: float) -> list[EncodedSegment]:
    def one(segment: Segment) -> EncodedSegment:
        return encode_segment(source, segment, upscale_fn, options, work / f"{segment.index:05d}.nut",
                              temporal_strength)

    if workers == 1:
        return [one(segment) for segment in segments]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, segments))


def _format_for(output: Path) -> str | None:
    """The muxer for ``output``'s extension (the temporary name has none)."""
    suffix = output.suffix.lower().lstrip(".")
    known = {"mkv": "matroska", "webm": "webm", "mp4": "mp4", "m4v": "mp4", "mov": "mov", "nut": "nut",
             "mts": "mpegts", "m2ts": "mpegts"}
    if suffix not in known:
        raise VideoError("join_failed", f"{output}: unknown video extension {output.suffix!r}; use one of "
                         f"{sorted('.' + k for k in known)} (.mkv holds every codec and stream)", output)
    return known[suffix]


def _notes(info: VideoInfo, encoded: list[EncodedSegment], join: JoinResult, check: VideoCheck) -> tuple[str, ...]:
    temporal = [note for note in encoded[0].notes if note.startswith(TEMPORAL_NOTE_PREFIX)]  # when it was on
    notes = [*(temporal or [TEMPORAL_NOTE]), *(note for note in encoded[0].notes if note not in temporal)]
    notes += [f"stream #{index} dropped: {reason}" for index, reason in sorted(join.dropped.items())]
    if info.skipped_leading_frames:
        notes.append(f"{info.skipped_leading_frames} frames before the first keyframe cannot be decoded; skipped")
    if info.interlaced:
        notes.append("interlaced input: fields were upscaled together as progressive frames (no deinterlacing)")
    if abs(check.timeline_shift_s) > 1e-9:
        notes.append(f"the {join.format} muxer shifted every stream by {check.timeline_shift_s:+.6f} s "
                     "(it cannot store negative timestamps); offsets between streams are kept")
    return tuple(notes)
