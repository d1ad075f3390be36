"""Videos on S3: a node-local copy of each input, shared by the processes of one node.

FFmpeg demuxers seek all over a file (an mp4's index sits at its end; every
segment seeks to its keyframe), so a video on S3 is copied once per node with
ranged, retried GETs and then read like a local file. Processes on the node
(probe tasks, upscale actors, the driver) share the copy: a file lock makes one
of them download while the others wait.

The cache is bounded: before a new copy lands, the least recently used copies
go until the new one fits in ``RAYSR_VIDEO_CACHE_GB`` (default 64). A process
still reading a removed copy keeps reading it (POSIX keeps an open file alive).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from filelock import FileLock

from raysr.storage import copy_to_local, is_s3, size_of

_DEFAULT_CACHE_GB = 64.0


def cache_dir() -> Path:
    """Where a node keeps its copies (``RAYSR_VIDEO_CACHE_DIR``, default ``$TMPDIR/raysr-video-inputs``)."""
    return Path(os.environ.get("RAYSR_VIDEO_CACHE_DIR") or Path(tempfile.gettempdir()) / "raysr-video-inputs")


def _cap_bytes() -> int:
    return int(float(os.environ.get("RAYSR_VIDEO_CACHE_GB", _DEFAULT_CACHE_GB)) * 1e9)


def local_path(uri: str, version: str | None = None) -> Path:
    """A local path to read the video at ``uri`` from: the path itself for local files,
    a node-local copy for ``s3://`` objects (downloaded once per node and ``version``).

    Args:
        uri: local path or ``s3://bucket/key``.
        version: what identifies this content of the object (ETag, or the size when the
            listing gave none); a new version gets a new copy.

    Raises:
        FileNotFoundError / PermissionError / OSError: the object cannot be read (S3 errors
            name the URI, never credentials).
    """
    if not is_s3(uri):
        return Path(uri)
    if version is None:
        version = f"size={size_of(uri)}"
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:32] + Path(uri).suffix.lower()
    copy = folder / name
    with FileLock(str(copy) + ".lock"):
        if copy.exists():
            os.utime(copy)  # most recently used
            return copy
        expected = size_of(uri)
        if expected is None:
            raise FileNotFoundError(f"{uri}: no such object")
        _make_room(folder, expected)
        partial = copy.with_name(f".{copy.name}.{os.getpid()}.partial")
        try:
            copy_to_local(uri, partial)
            os.replace(partial, copy)
        finally:
            partial.unlink(missing_ok=True)
    return copy


def _make_room(folder: Path, incoming: int) -> None:
    """Drop least recently used copies until ``incoming`` more bytes fit under the cap."""
    copies = sorted((path for path in folder.iterdir() if path.is_file() and not path.name.endswith(".lock")
                     and not path.name.startswith(".")), key=lambda path: path.stat().st_mtime)
    used = sum(path.stat().st_size for path in copies)
    cap = _cap_bytes()
    for path in copies:
        if used + incoming <= cap:
            break
        used -= path.stat().st_size
        path.unlink(missing_ok=True)
