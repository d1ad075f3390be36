"""Video super-resolution without Ray: probe and plan on the driver, segments on workers, join.

``plan_segments`` (driver) → ``encode_segment`` per segment (an actor: decode →
``upscale_fn`` per frame → encode) → ``join_segments`` (concatenate without
re-encoding, copy audio/subtitles/chapters) → ``verify_video``.
``upscale_video`` runs all four on one machine. Needs the ``video`` extra (PyAV).
"""

from __future__ import annotations

try:
    import av  # noqa: F401
except ImportError as error:  # pragma: no cover - the dev install has it
    raise ImportError("raysr.video needs PyAV (av>=18): pip install 'raysr[video]'") from error

from raysr.video.bench import bench_video
from raysr.video.errors import VideoError
from raysr.video.join import JoinResult, join_segments
from raysr.video.options import EncodeOptions
from raysr.video.pipeline import VideoResult, upscale_video
from raysr.video.probe import Segment, StreamInfo, VideoInfo, plan_segments, probe_video
from raysr.video.segment import EncodedSegment, UpscaleFn, encode_segment
from raysr.video.verify import StreamCheck, VideoCheck, verify_video

__all__ = [
    "EncodeOptions",
    "EncodedSegment",
    "JoinResult",
    "Segment",
    "StreamCheck",
    "StreamInfo",
    "UpscaleFn",
    "VideoCheck",
    "VideoError",
    "VideoInfo",
    "VideoResult",
    "bench_video",
    "encode_segment",
    "join_segments",
    "plan_segments",
    "probe_video",
    "upscale_video",
    "verify_video",
]
