"""Read, write and stat by URI: local paths and ``s3://`` behind one small API."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from raysr.sinks.write import output_relpath, partial_path, write_atomic


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        from raysr.sources import s3

        return s3.read_bytes(uri)
    return Path(uri).read_bytes()


def write_bytes(uri: str, data: bytes) -> int:
    """Atomic write (temp + rename locally; a single PUT/multipart on S3); returns bytes written."""
    if is_s3(uri):
        from raysr.sources import s3

        return s3.write_bytes(uri, data)
    return write_atomic(uri, data)


def copy_to_local(uri: str, path: str | Path) -> None:
    """Copy ``uri`` (S3 object or local file) to the local ``path`` (ranged, retried GETs on S3)."""
    if is_s3(uri):
        from raysr.sources import s3

        s3.download_file(uri, path)
    else:
        shutil.copyfile(uri, path)


def publish_file(path: str | Path, uri: str) -> int:
    """Put the local file ``path`` at ``uri`` whole or not at all; returns its size.

    S3: one (multipart) PUT. Local: a rename when both sit on one filesystem (``path`` is
    then gone), else a copy to a hidden temporary name beside ``uri`` and a rename.
    """
    if is_s3(uri):
        from raysr.sources import s3

        return s3.upload_file(path, uri)
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(path).st_dev == os.stat(target.parent).st_dev:
        os.replace(path, target)
    else:
        partial = partial_path(target)
        shutil.copyfile(path, partial)
        os.replace(partial, target)
    return target.stat().st_size


def size_of(uri: str) -> int | None:
    """Size in bytes, or ``None`` when the object does not exist."""
    if is_s3(uri):
        from raysr.sources import s3

        return s3.size_of(uri)
    try:
        return os.stat(uri).st_size
    except FileNotFoundError:
        return None


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create ``uri`` holding ``data`` only if nothing exists there; False if something does."""
    if is_s3(uri):
        from raysr.sources import s3

        return s3.create_exclusive(uri, data)
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return True


def delete(uri: str) -> None:
    """Remove ``uri`` if it exists."""
    if is_s3(uri):
        from raysr.sources import s3

        s3.delete(uri)
    else:
        Path(uri).unlink(missing_ok=True)


def output_uri(root: str, relative_input: str, extension: str) -> str:
    """The output location of an input, mirrored under ``root`` (never outside it)."""
    relative = output_relpath(relative_input, extension).as_posix()
    if is_s3(root):
        return f"{root.rstrip('/')}/{relative}"
    return str(Path(root).resolve() / relative)
