"""The one error type of the video package: what went wrong with which file, and what to do.

Every refusal of a video input is a :class:`VideoError` whose ``kind`` a manifest
row can record (``error_type``) and whose message names the file, says what is
wrong and what to try. PyAV/FFmpeg errors never leave this package unwrapped,
except the upscale callable's own errors, which keep their type (the engine's
``kind``) and gain a note naming the file and the frame, and a write the output's
store refused (a full disk: :func:`raysr.sinks.write.refused_by_store`), which is
no fault of the video and stays the ``OSError`` it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import av

KINDS = (
    "not_found",            # the path does not exist
    "empty",                # zero bytes
    "corrupt",              # cannot be opened or decoded as a video
    "truncated",            # ends before its header says it does
    "no_video_stream",      # audio-only or data file
    "zero_frames",          # a video stream without one decodable frame
    "unsupported_codec",    # this FFmpeg build has no decoder for it
    "unsupported_stream",   # an audio track the output container cannot hold
    "bad_upscale_output",   # the upscale callable returned the wrong shape/dtype
    "bad_timestamps",       # decoded frames out of order: the container lost their timestamps
    "encode_failed",        # the encoder refused the frames or the settings
    "join_failed",          # segments that cannot be concatenated
    "verify_failed",        # output frame count/duration/offsets differ from the input
)

#: Kinds that are faults of the input file: re-running the same file fails the same way.
INPUT_FAULTS = frozenset({"corrupt", "truncated", "no_video_stream", "zero_frames", "unsupported_codec",
                          "bad_timestamps"})


class VideoError(ValueError):
    """A video could not be read, processed, joined or verified.

    Attributes:
        kind: one of :data:`KINDS`, machine-readable (manifest ``error_type``).
        path: the file concerned (input, segment or output), as given.
    """

    def __init__(self, kind: str, message: str, path: object = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown VideoError kind {kind!r}; expected one of {KINDS}")
        super().__init__(message)
        self.kind = kind
        self.path = None if path is None else str(path)

    def __reduce__(self):  # keep kind and path when Ray pickles the error across processes
        return (type(self), (self.kind, str(self), self.path))


def classify_open_error(path: object, error: Exception) -> VideoError:
    """Turn a failure of ``av.open`` on an input into a :class:`VideoError`."""
    if isinstance(error, FileNotFoundError):
        return VideoError("not_found", f"{path}: no such file; check the path or the listing", path)
    if mp4_cut_off(path):
        return truncated_mp4(path)
    return VideoError(
        "corrupt",
        f"{path}: cannot be opened as a video container (FFmpeg: {error}); check that it is a "
        "video file and copy it again if it was transferred",
        path,
    )


def truncated_mp4(path: object) -> VideoError:
    return VideoError(
        "truncated",
        f"{path}: an MP4/MOV whose boxes run past the end of the file or whose index (moov) is "
        "missing; it was cut off while copying or the recording never finished: copy it again",
        path,
    )


def mp4_cut_off(path: object) -> bool:
    """True for an ISO-BMFF file (``ftyp`` first) with no ``moov`` box or a box past the end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            offset, seen = 0, set()
            while offset + 8 <= size:
                handle.seek(offset)
                header = handle.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if offset == 0 and kind != b"ftyp":
                    return False
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - offset
                if length < 8 or offset + length > size:
                    return True
                seen.add(kind)
                offset += length
            return b"ftyp" in seen and b"moov" not in seen
    except OSError:
        return False


@contextmanager
def decoding(path: object, where: str) -> Iterator[None]:
    """Wrap PyAV errors raised while demuxing/decoding ``path`` as ``corrupt`` VideoErrors."""
    try:
        yield
    except VideoError:
        raise
    except av.error.FFmpegError as error:
        raise VideoError(
            "corrupt",
            f"{path}: decoding failed {where} (FFmpeg: {error}); the stream is damaged there: "
            "re-copy the file, or cut the damaged part out with a remux and retry",
            path,
        ) from error
