"""List input items from local paths and globs (S3 prefixes: `raysr.sources.s3`).

Rules, the same for folders and globs:

* folders are walked recursively; symlinked folders are not followed (a link
  loop in an archive must not hang or duplicate the listing), symlinked files are;
* hidden files and folders (name starting with ``.``, e.g. ``.thumbnails``,
  AppleDouble ``._x.jpg``, raysr's own ``.x.png.*.raysr-tmp``) are skipped;
* only regular files are listed: a FIFO or device named ``x.jpg`` would block
  the reader; a broken symlink is listed (size -1) so its failure is reported;
* the extension filter is case-insensitive;
* items come sorted by their relative path, so a listing is reproducible.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif", ".avif",
                    ".jp2", ".j2k")  # JPEG 2000: libraries' and archives' scan masters
#: Containers raysr reads but does not write: their videos come out as Matroska, which holds
#: whatever they carry (an old camera's MJPEG AVI with PCM sound, a DVD's MPEG-2 with AC-3).
_VIDEO_WRITTEN_AS = dict.fromkeys((".avi", ".mpg", ".mpeg", ".vob", ".wmv", ".3gp"), ".mkv")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mts", ".m2ts",  # .mts/.m2ts: AVCHD camcorders
                    *_VIDEO_WRITTEN_AS)


def is_video(path: str) -> bool:
    """True when a path or URI names a video container (by extension)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def output_extension(relative: str, image_extension: str) -> str:
    """Images take the output format's extension; videos keep their container's, or go to
    ``.mkv`` from one raysr does not write (:data:`_VIDEO_WRITTEN_AS`)."""
    if not is_video(relative):
        return image_extension
    extension = "." + relative.rsplit(".", 1)[-1].lower()
    return _VIDEO_WRITTEN_AS.get(extension, extension)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputItem:
    """One listed input.

    Attributes:
        uri: absolute local path or ``s3://`` URI, as read.
        relative: path relative to its input root (POSIX separators), used to mirror the tree.
        size: bytes at listing time (-1 when unknown).
        version: what the store says identifies this content without reading it
            (``mtime_ns=…`` locally, ``etag=…`` on S3); ``None`` when unknown.
    """

    uri: str
    relative: str
    size: int = -1
    version: str | None = None


def _normalise(extensions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)


def _item(path: Path, root: Path) -> InputItem | None:
    """An item for a listed file, or None for something that must not be read (FIFO, device)."""
    try:
        info = path.stat()
    except OSError:  # broken symlink, vanished file: listed, so the read reports it
        return InputItem(str(path), path.relative_to(root).as_posix(), -1)
    if not stat.S_ISREG(info.st_mode):
        logger.warning("skipping %s: not a regular file", path)
        return None
    return InputItem(str(path), path.relative_to(root).as_posix(), info.st_size, f"mtime_ns={info.st_mtime_ns}")


def _through_symlinked_folder(match: Path, root: Path) -> bool:
    """Whether ``match`` is, or lies below, a symlinked folder between ``root`` and itself."""
    folders = [match] if match.is_dir() else []
    folders += [parent for parent in match.parents if parent != root and parent.is_relative_to(root)]
    return any(folder.is_symlink() for folder in folders)


def _walk(root: Path, extensions: tuple[str, ...]) -> list[InputItem]:
    items = []

    def report(error: OSError) -> None:
        logger.warning("cannot list %s: %s", error.filename, error.strerror)

    # followlinks=False: a symlink loop in an archive must not hang the listing.
    for folder, subdirs, files in os.walk(root, followlinks=False, onerror=report):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                item = _item(Path(folder) / name, root)
                if item:
                    items.append(item)
    return items


def _glob(pattern: Path) -> list[Path]:
    """Absolute matches of a glob, via pathlib: its ``**`` does not enter symlinked folders
    (``glob.glob`` does, and two link loops make it run for ever)."""
    parts = Path(os.path.abspath(pattern)).parts
    first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    anchor, rest = Path(*parts[:first]), parts[first:]
    if not rest:
        return [anchor] if os.path.lexists(anchor) else []
    matches = []
    for match in anchor.glob(str(Path(*rest))):
        below = match.relative_to(anchor).parts
        if not any(part.startswith(".") for part in below):  # as glob.glob and the folder walk
            matches.append(match)
    return matches


def list_local(pattern: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Iterator[InputItem]:
    """Yield items under a file, a folder (recursive) or a glob, sorted by relative path.

    A single file is listed whatever its extension (it was named explicitly).
    A glob (``scans/**/*.tif``, ``scans/19*``) lists the files it matches and
    walks the folders it matches; relative paths start at the deepest folder
    common to all matches.

    Args:
        pattern: a file, a folder, or a glob (``**`` recurses); ``~`` is expanded.
        extensions: file extensions to list, case-insensitive, with or without dot.

    Raises:
        FileNotFoundError: when nothing matches ``pattern``, or no matched
            file has one of ``extensions``.
    """
    extensions = _normalise(extensions)
    path = Path(pattern).expanduser()
    if path.is_file():
        info = path.stat()
        yield InputItem(str(path.resolve()), path.name, info.st_size, f"mtime_ns={info.st_mtime_ns}")
        return
    if path.is_dir():
        root = path.resolve()
        items = _walk(root, extensions)
    else:
        matches = _glob(path)
        if not matches:
            raise FileNotFoundError(
                f"input {pattern!r} matches no file or folder; check the path, and quote globs "
                "so the shell does not expand them"
            )
        root = Path(os.path.commonpath([str(match.parent) for match in matches]))
        items = []
        for match in matches:
            if _through_symlinked_folder(match, root):
                continue  # as in a folder walk
            if match.is_dir():
                items += [
                    InputItem(item.uri, (match.relative_to(root) / item.relative).as_posix(), item.size, item.version)
                    for item in _walk(match, extensions)
                ]
            elif match.suffix.lower() in extensions:
                item = _item(match, root)
                if item:
                    items.append(item)
        items = list({item.relative: item for item in items}.values())  # overlapping matches
    if not items:
        raise FileNotFoundError(
            f"input {pattern!r} holds no file with one of the extensions {', '.join(extensions)}; "
            "check the path or the extensions setting"
        )
    yield from sorted(items, key=lambda item: item.relative)
