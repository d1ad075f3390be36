"""Tests for raysr/sinks/write.py: deterministic output paths that never leave the root, atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath

import pytest

from raysr.sinks import write as write_module
from raysr.sinks.write import (
    OutputsStoppedError,
    OutputUnwritableError,
    UnsafePathError,
    UnwritableStreak,
    as_store_fault,
    output_relpath,
    partial_path,
    sweep_partials,
    write_atomic,
)

# --- output_relpath ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("a.jpg", "a.png"),
        ("scans/1990/img 01.JPG", "scans/1990/img 01.png"),
        ("Fotos/Straße über Köln/写真.tiff", "Fotos/Straße über Köln/写真.png"),
        ("no_extension", "no_extension.png"),
        ("archive.v2/scan", "archive.v2/scan.png"),
        (".hidden", ".hidden.png"),
        ("a\\b\\c.jpg", "a/b/c.png"),  # Windows/S3-style separators
        ("line\nbreak.jpg", "line\nbreak.png"),
        ("..dots.jpg", "..dots.png"),  # a name starting with dots is not a parent reference
    ],
)
def test_output_relpath_mirrors_and_replaces_extension(relative, expected):
    result = output_relpath(relative, ".png")
    assert isinstance(result, PurePosixPath) and str(result) == expected


@pytest.mark.parametrize(
    "relative",
    ["../escape.jpg", "a/../../escape.jpg", "a/..", "/etc/passwd", "\\\\server\\share\\x.jpg", "..\\x.jpg",
     "", "a//b.jpg", "a/./b.jpg", "a/", "nul\x00byte.jpg"],
)
def test_output_relpath_refuses_unsafe_names(relative):
    with pytest.raises(UnsafePathError, match="rename the input"):
        output_relpath(relative, ".png")


def test_output_relpath_never_leaves_the_root(tmp_path):
    root = tmp_path / "out"
    for name in ("a/b.jpg", "x y/z.tif", "deep/er/still.webp"):
        assert (root / output_relpath(name, ".png")).resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize("extension", ["png", "", ".", "./png"])
def test_output_relpath_checks_the_extension(extension):
    with pytest.raises(ValueError, match="extension"):
        output_relpath("a.jpg", extension)


# --- write_atomic ---------------------------------------------------------------------------


def test_write_creates_parents_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "deep" / "ä b.png"
    assert write_atomic(target, b"first") == 5
    assert target.read_bytes() == b"first"
    assert os.listdir(target.parent) == ["ä b.png"]


def test_write_overwrites(tmp_path):
    target = tmp_path / "x.png"
    write_atomic(target, b"old contents")
    write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["x.png"]


def test_write_uses_normal_permissions_not_temp_file_ones(tmp_path):
    target = tmp_path / "x.png"
    write_atomic(target, b"data")
    assert target.stat().st_mode & 0o777 == 0o666 & ~write_module._UMASK


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    write_atomic(target, b"old")

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(write_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.png"]


def test_sweep_partials_removes_only_what_killed_writers_left(tmp_path):
    kept = [tmp_path / "a.png", tmp_path / "deep" / "er" / "b.png", tmp_path / ".hidden-by-the-user",
            tmp_path / "c.raysr-tmp", tmp_path / "_raysr" / "segments" / "v" / "0000.mkv"]
    partials = [tmp_path / ".a.png.x1y2.raysr-tmp", tmp_path / "deep" / "er" / ".b.png.z9.raysr-tmp",
                partial_path(tmp_path / "films" / "film.mp4"),  # a joined video before its check
                tmp_path / "_raysr" / "segments" / "v" / ".raysr-segment-k2" / "0001.mkv"]
    for path in kept + partials:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sweep_partials(tmp_path) == 4
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in partials) and not partials[-1].parent.exists()
    assert sweep_partials(tmp_path) == 0


def test_write_long_name(tmp_path):
    target = tmp_path / ("n" * 250 + ".png")  # the temp name must not exceed 255 bytes
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"


def test_write_refuses_a_symlinked_folder_leading_outside_root(tmp_path):
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside the output folder"):
        write_atomic(root / "link" / "x.png", b"data", root=root)
    assert not any(outside.iterdir())
    write_atomic(root / "inside" / "x.png", b"data", root=root)
    assert (root / "inside" / "x.png").read_bytes() == b"data"


@pytest.mark.parametrize("error, uri, store", [
    (OSError(errno.ENOSPC, "No space left on device"), "/out/a.png", True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "/out/a.png", True),
    (OSError(errno.EROFS, "Read-only file system"), "/out/a.png", True),
    (PermissionError("s3://b/a.png: PUT failed: AccessDenied: Access Denied"), "s3://b/a.png", True),
    (FileNotFoundError("s3://b/a.png: PUT failed: NoSuchBucket"), "s3://b/a.png", True),
    (OSError(errno.ENAMETOOLONG, "File name too long"), "/out/a.png", False),  # one item's name
    (OSError(errno.ENOSPC, "No space", "/out/x/.a.png.k2.raysr-tmp"), "/out/x/a.png", True),  # its temp file
    (PermissionError(errno.EACCES, "Permission denied", "/out"), "/out/x/a.png", True),  # making its folder
    (OSError(errno.ENOSPC, "No space", "/out/seg/v/.raysr-segment-1/0.mkv"), "/out/seg/v", True),
    (PermissionError(errno.EACCES, "Permission denied", "/in/film.mp4"), "/out/seg/v", False),  # the source
    (OSError(errno.ENOSPC, "No space", "/tmp/raysr-join-1/film.mkv"), "/out/film.mkv", False),  # node scratch
    (FileNotFoundError("gone"), "/out/a.png", False),
    (ValueError("cannot encode"), "/out/a.png", False),
])
def test_as_store_fault_blames_the_store_only_for_what_no_item_can_cause(error, uri, store):
    fault = as_store_fault(error, uri)
    assert isinstance(fault, OutputUnwritableError) is store
    if store:
        assert uri in str(fault) and str(error) in str(fault) and "run again" in str(fault)
    else:
        assert fault is error


def test_the_unwritable_streak_stops_after_16_in_a_row_and_restarts_at_each_written_output():
    unwritable = {"status": "error", "error_type": "output_unwritable", "error_message": "a.png: cannot write (full)"}
    corrupt = {"status": "error", "error_type": "truncated", "error_message": "b.png: truncated"}
    streak = UnwritableStreak()
    streak.check([unwritable] * 15 + [{"status": "ok"}] + [unwritable] * 10)  # a write went through: 10 now
    streak.check([corrupt] * 50)  # bad inputs say nothing of the store
    with pytest.raises(OutputsStoppedError, match=r"after 16 items in a row .*a.png: cannot write \(full\)"):
        streak.check([unwritable] * 6)
