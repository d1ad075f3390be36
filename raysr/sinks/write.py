"""Write outputs atomically to deterministic paths inside the output root."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

# Read once at import (single-threaded): os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_TMP_SUFFIX = ".raysr-tmp"
#: Work folders of writers that build an output in several files (the video segment store):
#: :func:`sweep_partials` removes those a killed run left.
WORK_FOLDER_PREFIX = ".raysr-segment-"


_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class UnsafePathError(ValueError):
    """An input name would place its output outside the output root."""


class OutputUnwritableError(OSError):
    """Outputs cannot be written where they go (full, read-only, not permitted): no fault of the item."""

    kind = "output_unwritable"


def as_store_fault(error: BaseException, output_uri: str) -> BaseException:
    """``error`` from writing ``output_uri``, as an :class:`OutputUnwritableError` when the output store,
    not the item, is at fault (no space, quota, read-only, permission denied locally or on S3).

    An error that names a file neither in ``output_uri``'s folder nor above it (the source, a
    scratch file in /tmp) is not the output store's and is returned as it is.
    """
    if not _on_the_way_to(getattr(error, "filename", None), output_uri):
        return error
    missing_bucket = isinstance(error, FileNotFoundError) and output_uri.startswith("s3://")  # NoSuchBucket
    if refused_by_store(error) or missing_bucket:
        return OutputUnwritableError(f"cannot write {output_uri}: {error}; free space or fix the permissions where "
                                     "the outputs go, then run again (finished items are kept)")
    return error


def refused_by_store(error: BaseException) -> bool:
    """A write refused by where it goes (no space, quota, read-only, not permitted), whoever wrote:
    writers that wrap their errors (the video muxers) let these through as they are."""
    return isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno in _STORE_ERRNOS)


def _on_the_way_to(filename: object, output_uri: str) -> bool:
    """``filename`` (an error's, may be None) is in the folder of ``output_uri`` or one of its parents."""
    if not isinstance(filename, str):
        return True  # unnamed: judged by the error alone
    folder, filename = os.path.dirname(output_uri.rstrip("/")), filename.rstrip("/")
    return filename.startswith(folder + "/") or (folder + "/").startswith(filename + "/")


class OutputsStoppedError(RuntimeError):
    """A run stopped because its outputs could no longer be written (not an item's failure: never caught per item)."""


class UnwritableStreak:
    """Stops a run whose outputs can no longer be written (a full disk, a revoked bucket policy):
    without it every remaining item of the archive would be read, upscaled and then fail to write.

    :meth:`check` takes manifest rows (``status``, ``error_type``, ``error_message``) as they finish.
    """

    limit = 16  # items in a row, none written between them; one failure alone may be one file's

    def __init__(self) -> None:
        self.count = 0

    def check(self, items: list[dict]) -> None:
        for row in items:
            if row.get("error_type") == OutputUnwritableError.kind:
                self.count += 1
                if self.count >= self.limit:
                    raise OutputsStoppedError(f"stopped after {self.count} items in a row could not be written; "
                                              f"the last: {row.get('error_message')}")
            elif row.get("status") in ("ok", "flagged"):
                self.count = 0


def output_relpath(relative_input: str, extension: str) -> PurePosixPath:
    """Map an input path relative to its root to the output's relative path.

    The input's extension is replaced, so ``a/b.jpg`` → ``a/b.png``. Backslashes
    count as separators (Windows and S3 names). Absolute paths, ``..``
    components and NUL bytes are refused: no input name may write outside the
    output root. Empty and ``.`` components (``a//b.jpg``, legal S3 keys) are
    refused too, as they would collide with ``a/b.jpg`` once on disk.

    Args:
        relative_input: the input's path relative to its input root.
        extension: the output extension with its dot, e.g. ``.png``.

    Raises:
        UnsafePathError: for a name that cannot be mirrored safely.
        ValueError: for an extension without a leading dot.

    Example:
        >>> str(output_relpath("scans/1990/img 01.jpg", ".png"))
        'scans/1990/img 01.png'
    """
    if not extension.startswith(".") or len(extension) < 2 or "/" in extension or "\\" in extension:
        raise ValueError(f"extension must look like '.png', got {extension!r}")
    posix = relative_input.replace("\\", "/")
    parts = posix.split("/")
    if posix.startswith("/") or "\x00" in posix or any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(
            f"{relative_input!r}: absolute paths, empty, '.' or '..' components and NUL bytes cannot be "
            "mirrored into the output folder; rename the input"
        )
    path = PurePosixPath(posix)
    return path.with_suffix(extension) if path.suffix else path.with_name(path.name + extension)


def write_atomic(path: str | Path, data: bytes, *, root: str | Path | None = None) -> int:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A crash leaves either the old file or the new one under ``path``, never a
    partial file (a stray hidden ``.*.raysr-tmp`` file at most). The file gets
    the usual permissions (0666 less the umask), not the 0600 of a temp file.

    Args:
        path: the destination file.
        data: the bytes to write.
        root: when given, ``path`` must resolve (symlinks followed) inside it;
            this catches a symlinked folder in the output tree pointing elsewhere.

    Returns:
        The number of bytes written.

    Raises:
        UnsafePathError: ``path`` resolves outside ``root``.
        OSError: the write or rename failed (the temporary file is removed).
    """
    path = Path(path)
    if root is not None:
        real_root = Path(root).resolve()
        if not path.resolve().is_relative_to(real_root):
            raise UnsafePathError(
                f"{path}: resolves to {path.resolve()}, outside the output folder {real_root}; "
                "remove the symlink or choose another output folder"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the temporary name within the 255-byte limit even for long output names.
    prefix = "." + path.name.encode()[:100].decode(errors="ignore") + "."
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_UMASK)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return len(data)


def partial_path(path: str | Path) -> Path:
    """The hidden name beside ``path`` that a writer builds a whole file under before the rename that
    publishes it; :func:`sweep_partials` removes those a killed writer left, and listings skip them."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP_SUFFIX}")


def sweep_partials(root: str | Path) -> int:
    """Remove what writers killed mid-write left under a local output ``root``; returns how many.

    Those are the hidden ``.*.raysr-tmp`` files of :func:`write_atomic` and :func:`partial_path`
    (a copy across file systems, a joined video before its check) and the ``.raysr-segment-*``
    work folders of the video segment store, partial encodes that can be large. Call it only while holding the output's lease, after a run that
    died without releasing it: nothing else writes there then.
    """
    removed = 0
    for folder, subfolders, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
        for name in [name for name in subfolders if name.startswith(WORK_FOLDER_PREFIX)]:
            shutil.rmtree(Path(folder, name), ignore_errors=True)
            subfolders.remove(name)  # not walked: just removed
            removed += 1
    return removed


def colliding_outputs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Inputs whose output path is already taken by an earlier input.

    ``pairs`` is ``(input, output)``; inputs are considered in sorted order, so
    the same archive always keeps the same winner. Returns ``{loser: winner}``
    (e.g. ``a.jpg`` and ``a.png`` both becoming ``a.png``).
    """
    owners: dict[str, str] = {}
    losers: dict[str, str] = {}
    for source, target in sorted(pairs):
        if target in owners:
            losers[source] = owners[target]
        else:
            owners[target] = source
    return losers
