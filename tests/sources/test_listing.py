"""Tests for raysr/sources/listing.py: archives as users have them, with odd names, links and clutter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raysr.sources.listing import VIDEO_EXTENSIONS, InputItem, list_local


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 3)


def relatives(pattern, **options) -> list[str]:
    return [item.relative for item in list_local(str(pattern), **options)]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    touch(root, "b.jpg", "a.PNG", "notes.txt", "sub/z.TIF", "sub/c.jpeg", "sub/deeper/d.webp", "a2/x.gif")
    return root


def test_folder_recursion_sorted(archive):
    assert relatives(archive) == ["a.PNG", "a2/x.gif", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/z.TIF"]


def test_items_carry_absolute_uri_and_size(archive):
    item = next(iter(list_local(str(archive))))
    assert isinstance(item, InputItem) and Path(item.uri).is_absolute()
    assert Path(item.uri) == (archive / "a.PNG").resolve() and item.size == 3


def test_extension_filter_is_case_insensitive_with_or_without_dot(archive):
    touch(archive, "e.JpG")
    assert relatives(archive, extensions=(".jpg",)) == ["b.jpg", "e.JpG"]
    assert relatives(archive, extensions=("JPG", "tif")) == ["b.jpg", "e.JpG", "sub/z.TIF"]


def test_hidden_files_and_folders_skipped(archive):
    touch(archive, ".hidden.jpg", "._b.jpg", ".thumbnails/t.jpg", "sub/.git/objects/x.png", ".x.png.ab12.raysr-tmp")
    assert relatives(archive) == ["a.PNG", "a2/x.gif", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/z.TIF"]


def test_symlink_loop_does_not_hang_or_duplicate(archive):
    (archive / "sub" / "loop").symlink_to(archive, target_is_directory=True)
    (archive / "self").symlink_to(".", target_is_directory=True)
    expected = ["a.PNG", "a2/x.gif", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/z.TIF"]
    assert relatives(archive) == expected
    assert relatives(archive / "**" / "*") == expected  # `**` would follow the loops


def test_symlinked_file_is_listed_and_broken_link_reported(archive):
    (archive / "alias.jpg").symlink_to(archive / "b.jpg")
    (archive / "broken.jpg").symlink_to(archive / "gone.jpg")
    items = {item.relative: item for item in list_local(str(archive))}
    assert items["alias.jpg"].size == 3 and items["broken.jpg"].size == -1


def test_fifo_with_image_name_is_skipped(archive):
    os.mkfifo(archive / "pipe.jpg")  # reading it would block forever
    assert "pipe.jpg" not in relatives(archive)


def test_glob_patterns(archive):
    assert relatives(archive / "*.jpg") == ["b.jpg"]
    assert relatives(archive / "**" / "*.jp*g") == ["b.jpg", "sub/c.jpeg"]
    assert relatives(archive / "sub" / "*") == ["c.jpeg", "deeper/d.webp", "z.TIF"]  # folders are walked
    assert relatives(archive / "a*") == ["a.PNG", "a2/x.gif"]


def test_single_file_is_listed_whatever_its_extension(archive):
    assert [(item.relative, item.size) for item in list_local(str(archive / "notes.txt"))] == [("notes.txt", 3)]


def test_nothing_matches_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(list_local(str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(list_local(str(tmp_path / "*.png")))


def test_folder_without_images_raises(tmp_path):
    touch(tmp_path, "readme.txt", "clip.mp4")
    with pytest.raises(FileNotFoundError, match="no file with one of the extensions"):
        list(list_local(str(tmp_path)))
    assert relatives(tmp_path, extensions=VIDEO_EXTENSIONS) == ["clip.mp4"]


def test_odd_names(tmp_path):
    names = ["Straße über/写真 01.jpg", "with space.png", "new\nline.png", "tab\tand'quote\".jpg", "[1] *star?.png"]
    touch(tmp_path, *names)
    assert relatives(tmp_path) == sorted(names)
    assert relatives(tmp_path / "[1] *star?.png") == ["[1] *star?.png"]  # an exact name wins over glob syntax


def test_tilde_is_expanded(archive, monkeypatch):
    monkeypatch.setenv("HOME", str(archive.parent))
    assert relatives("~/archive/*.jpg") == ["b.jpg"]


def test_outputs_take_the_image_format_and_videos_a_container_raysr_writes():
    from raysr.sources.listing import output_extension

    assert output_extension("scans/a.HEIC", ".png") == ".png"
    assert output_extension("films/b.MP4", ".png") == ".mp4"
    assert output_extension("films/c.m4v", ".jpg") == ".m4v"
    assert output_extension("camera/MVI_0001.AVI", ".png") == ".mkv"  # AVI is read, not written
    assert output_extension("dvd/VTS_01_1.VOB", ".png") == ".mkv"
    assert output_extension("camcorder/00001.MTS", ".png") == ".mts"  # AVCHD's MPEG-TS is written as it came


def test_every_listed_video_gets_an_output_container_the_join_can_write():
    """A video extension listed without a writable output (as .avi was) fails every such input at the join."""
    from raysr.sources.listing import output_extension
    from raysr.video.pipeline import _format_for

    for extension in VIDEO_EXTENSIONS:
        assert _format_for(Path("out" + output_extension("in" + extension, ".png"))), extension
