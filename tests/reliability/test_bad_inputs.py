"""A corpus of bad, odd and hostile inputs, generated here (nothing downloaded), through
ONE real job on the simulated cluster: every listed input ends as exactly one manifest
row — ``ok`` with a correct output, or ``error`` with a message naming the file — and
the job never crashes.

The table of kind → outcome printed at the end is the one quoted in the README.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
from pillow_heif import register_heif_opener

import raysr.job.run as run_module
from clips import _write_audio, write_clip
from raysr.job.run import run_job
from raysr.job.spec import parse_spec
from raysr.manifest import item_rows, latest_rows, read_manifest

SCALE = 4  # bicubic's default factor
register_heif_opener()  # to write the corpus's HEIC files (raysr's decoder registers it for itself)


@dataclass
class Kind:
    """One kind of input: the file(s) it makes and what its row must say."""

    name: str
    file: str | None  # the relative path whose row is checked; None = must not be listed
    expect: str  # "ok", "error", "skipped", "unlisted"
    error_type: str | None = None  # when set, the row's error_type must equal it
    check: object = None  # callable(output_path, row) for extra checks on ok rows
    skip_reason: str | None = None  # why this kind cannot be tried here


def _gradient(height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    top = 255 if dtype == np.uint8 else 65535
    y, x = np.mgrid[0:height, 0:width]
    planes = [x * top // max(width - 1, 1), y * top // max(height - 1, 1), (x + y) * top // (width + height)]
    planes += [np.full_like(x, top * 3 // 4)] * (channels - 3)
    return np.stack(planes[:channels], axis=-1).astype(dtype)


def _png_bytes(pixels: np.ndarray) -> bytes:
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return cv2.imencode(".png", bgr)[1].tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A real 16×16 PNG whose IHDR (CRC fixed) claims ``width``×``height``."""
    data = bytearray(_png_bytes(_gradient(16, 16)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _audio_only_mp4(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        _write_audio(out, stream, 0.5)


def _check_shape(height: int, width: int, channels: int | None = None, dtype=np.uint8):
    def check(output: Path, row: dict) -> None:
        pixels = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
        assert pixels is not None, f"{output} is not readable"
        assert pixels.shape[:2] == (height * SCALE, width * SCALE), (output, pixels.shape)
        assert pixels.dtype == dtype, (output, pixels.dtype)
        if channels is not None:
            assert (1 if pixels.ndim == 2 else pixels.shape[2]) == channels, (output, pixels.shape)
    return check


def _check_exif_upright(output: Path, row: dict) -> None:
    # Stored 48 wide × 32 high with a red block top-left; orientation 6 = rotate 90° clockwise
    # to display, so the upright image is 32 × 48 with the block top-right.
    pixels = cv2.cvtColor(cv2.imread(str(output)), cv2.COLOR_BGR2RGB)
    assert pixels.shape[:2] == (48 * SCALE, 32 * SCALE)
    corner = 8 * SCALE
    top_right, top_left = pixels[:corner, -corner:], pixels[:corner, :corner]
    assert top_right[..., 0].mean() > 200 and top_right[..., 1].mean() < 60, "orientation not applied"
    assert top_left[..., 0].mean() < 100
    assert Image.open(output).getexif().get(0x0112, 1) == 1  # reset to upright


def _check_icc_kept(profile: bytes):
    def check(output: Path, row: dict) -> None:
        assert Image.open(output).info.get("icc_profile") == profile, "ICC profile not kept"
        assert "icc" in (row["metadata_kept"] or "").lower()
    return check


def _check_video(output: Path, row: dict) -> None:
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (32 * SCALE, 24 * SCALE)


def build_corpus(root: Path, outside: Path) -> list[Kind]:
    """Write the corpus under ``root``; returns its kinds. ``outside`` is a folder beside it."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    kinds: list[Kind] = []

    def add(name, file, data, expect, error_type=None, check=None):
        if data is not None:
            path = root / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        kinds.append(Kind(name, file, expect, error_type, check))

    good = _png_bytes(_gradient(24, 32))
    jpeg = _pil_bytes(Image.fromarray(_gradient(32, 32)), "JPEG", quality=90)
    png = _png_bytes(_gradient(32, 32))

    # Damaged or not images at all.
    add("zero-byte file", "zero.png", b"", "error", "empty")
    add("truncated PNG", "truncated.png", png[: len(png) // 2], "error", "truncated")
    add("truncated JPEG", "truncated.jpg", jpeg[: len(jpeg) // 2], "error", "truncated")
    add("text file named .png", "notes.png", b"shopping list\neggs\nmilk\n" * 10, "error", "not_an_image")
    add("HTML error page saved as .jpg", "error_page.jpg",
        b"<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body>Access denied</body></html>",
        "error", "not_an_image")
    add("HEIC header with no image after it", "cut.heic",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "error", "truncated")
    add("1x1 image", "one_px.png", _png_bytes(_gradient(1, 1)), "error", "too_small")
    add("15x15 image", "fifteen_px.png", _png_bytes(_gradient(15, 15)), "error", "too_small")
    add("PNG header claiming 60000x60000", "bomb.png", _png_claiming(60000, 60000), "error", "too_large")
    add("float32 gray TIFF", "float_gray.tif",
        _pil_bytes(Image.fromarray(_gradient(24, 24)[..., 0].astype(np.float32) / 255), "TIFF"), "error", "unsupported")
    float_rgb = cv2.imencode(".tiff", _gradient(24, 24).astype(np.float32) / 255)[1].tobytes()
    add("float32 RGB TIFF", "float_rgb.tiff", float_rgb, "error", "unsupported")
    add("JPEG with garbage EXIF", "bad_exif.jpg", jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff"
        + jpeg[2:], "ok", check=_check_shape(32, 32))

    # Odd but valid layouts: each must come out right.
    add("control: plain RGB PNG", "good.png", good, "ok", check=_check_shape(24, 32, 3))
    add("8-bit gray PNG", "gray8.png", _png_bytes(_gradient(24, 24)[..., 0]), "ok", check=_check_shape(24, 24, 1))
    add("RGBA PNG", "rgba.png", _png_bytes(_gradient(24, 24, 4)), "ok", check=_check_shape(24, 24, 4))
    add("gray+alpha PNG", "gray_alpha.png", _pil_bytes(Image.fromarray(_gradient(24, 24)[..., :2], "LA"), "PNG"),
        "ok", check=_check_shape(24, 24))
    add("16-bit RGB PNG", "rgb16.png", _png_bytes(_gradient(24, 24, dtype=np.uint16)), "ok",
        check=_check_shape(24, 24, 3, np.uint16))
    add("16-bit gray PNG", "gray16.png", _png_bytes(_gradient(24, 24, dtype=np.uint16)[..., 0]), "ok",
        check=_check_shape(24, 24, 1, np.uint16))
    add("16-bit RGB TIFF", "rgb16_tiff.tif", cv2.imencode(".tiff", _gradient(24, 24, dtype=np.uint16))[1].tobytes(), "ok",
        check=_check_shape(24, 24, 3, np.uint16))
    palette = Image.fromarray(_gradient(24, 24)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("palette PNG with transparency", "palette_trns.png", _pil_bytes(palette, "PNG", transparency=0), "ok",
        check=_check_shape(24, 24, 4))
    add("CMYK JPEG", "cmyk.jpg", _pil_bytes(Image.fromarray(_gradient(24, 24)).convert("CMYK"), "JPEG"), "ok",
        check=_check_shape(24, 24, 3))
    stored = _gradient(32, 48)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    add("EXIF-rotated JPEG (orientation 6)", "rotated.jpg",
        _pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()), "ok", check=_check_exif_upright)
    add("EXIF-rotated HEIC (a phone's photo)", "phone.heic",
        _pil_bytes(Image.fromarray(stored), "HEIF", quality=95, exif=exif.tobytes()), "ok", check=_check_exif_upright)
    add("HEIC named .jpg", "phone_renamed.jpg", _pil_bytes(Image.fromarray(_gradient(24, 32)), "HEIF", quality=90),
        "ok", check=_check_shape(24, 32, 3))
    add("EXIF-rotated AVIF", "rotated_avif.avif",
        _pil_bytes(Image.fromarray(stored), "AVIF", quality=95, exif=exif.tobytes()), "ok", check=_check_exif_upright)
    add("progressive JPEG", "progressive.jpg",
        _pil_bytes(Image.fromarray(_gradient(24, 40)), "JPEG", progressive=True, quality=90), "ok",
        check=_check_shape(24, 40, 3))
    frames = [Image.fromarray(_gradient(24, 24) // (index + 1)) for index in range(3)]
    add("animated GIF (first frame)", "animated.gif", _pil_bytes(frames[0], "GIF", save_all=True,
        append_images=frames[1:], duration=100, loop=0), "ok", check=_check_shape(24, 24))
    add("multi-page TIFF (first page)", "multipage.tiff", _pil_bytes(frames[0].convert("RGB"), "TIFF", save_all=True,
        append_images=[frame.convert("RGB") for frame in frames[1:]]), "ok", check=_check_shape(24, 24, 3))
    add("WebP with alpha", "alpha.webp", _pil_bytes(Image.fromarray(_gradient(24, 24, 4), "RGBA"), "WEBP",
        lossless=True), "ok", check=_check_shape(24, 24, 4))
    add("BMP", "plain.bmp", _pil_bytes(Image.fromarray(_gradient(24, 24)), "BMP"), "ok", check=_check_shape(24, 24, 3))
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    add("PNG with ICC profile (kept)", "icc.png", _pil_bytes(Image.fromarray(_gradient(24, 24)), "PNG",
        icc_profile=profile), "ok", check=_check_icc_kept(profile))
    add("upper-case extension", "SHOUT.PNG", good, "ok", check=_check_shape(24, 32))

    # Hostile names.
    add("unicode file name", "fotos/Ünïcödé 日本語 ☃.png", good, "ok", check=_check_shape(24, 32))
    add("spaces in file name", "with  many spaces .png", good, "ok", check=_check_shape(24, 32))
    add("newline in file name", "new\nline.png", good, "ok", check=_check_shape(24, 32))
    add("shell/URL characters in name", "a#b%20c$(x);'\"&.png", good, "ok", check=_check_shape(24, 32))

    # File-system traps.
    (root / "loop").mkdir()
    (root / "loop" / "back").symlink_to("..", target_is_directory=True)
    (root / "loop" / "self").symlink_to(".", target_is_directory=True)
    add("symlink loop in an input folder", "loop/inside.png", good, "ok", check=_check_shape(24, 32))
    (root / "self_link.png").symlink_to("self_link.png")
    add("file symlink pointing at itself", "self_link.png", None, "error", "unreadable")
    (root / "dangling.png").symlink_to(outside / "gone.png")
    add("dangling symlink", "dangling.png", None, "error", "missing")
    (outside / "elsewhere.png").write_bytes(good)
    (root / "linked_file.png").symlink_to(outside / "elsewhere.png")
    add("symlinked file (followed; output stays inside)", "linked_file.png", None, "ok", check=_check_shape(24, 32))
    os.mkfifo(root / "fifo.png")
    add("FIFO named .png (not read: would block)", None, None, "unlisted")
    (root / "folder.png").mkdir()
    add("folder named .png", None, None, "unlisted")
    add(".hidden file", None, None, "unlisted")
    (root / ".hidden.png").write_bytes(good)
    add("file deleted between listing and reading", "deleted.png", good, "error", "missing")
    if os.geteuid() == 0:
        kinds.append(Kind("unreadable file (chmod 000)", None, "skip",
                          skip_reason="running as root: permissions do not stop root reading, so it cannot be tried"))
    else:
        add("unreadable file (chmod 000)", "unreadable.png", good, "error", "unreadable")
        (root / "unreadable.png").chmod(0)
    add("output collision: same stem .png and .tif", "collide.png", good, "ok")
    add("output collision: the loser", "collide.tif", cv2.imencode(".tiff", _gradient(24, 24))[1].tobytes(),
        "error", "output_collision")

    # Video.
    write_clip(root / "clip.mp4", frames=6, size=(32, 24), fps=12, gop=6, audio=None)
    add("control: small H.264 clip", "clip.mp4", None, "ok", check=_check_video)
    write_clip(root / "MVI_0001.avi", frames=6, size=(32, 24), fps=12, gop=1, codec="mjpeg", pix_fmt="yuvj420p",
               audio="pcm_s16le")
    add("old camera's MJPEG AVI with PCM sound (→ .mkv)", "MVI_0001.avi", None, "ok", check=_check_video)
    write_clip(root / "00001.MTS", frames=6, size=(32, 24), fps=12, gop=6, audio="aac")
    add("AVCHD camcorder .MTS (MPEG-TS, stays .mts)", "00001.MTS", None, "ok", check=_check_video)
    write_clip(root / "h264.avi", frames=12, size=(32, 24), fps=12, gop=12, audio=None)
    add("H.264 with B-frames in .avi (no frame times)", "h264.avi", None, "error", "bad_timestamps")
    valid = (root / "clip.mp4").read_bytes()
    add("corrupt video (MP4 header, garbage body)", "corrupt.mp4",
        valid[:32] + np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "error")
    add("truncated video (first 40%)", "truncated_clip.mp4", valid[: len(valid) * 2 // 5], "error")
    _audio_only_mp4(root / "audio_only.mp4")
    add("video without a video stream (audio-only .mp4)", "audio_only.mp4", None, "error")
    add("zero-length video", "empty.mp4", b"", "error")
    add("text file named .mkv", "notes.mkv", b"not a film\n" * 20, "error")
    return kinds


def _table(kinds: list[Kind], rows: dict) -> str:
    lines = [f"| {'kind':<48} | outcome |", f"| {'-' * 48} | ------- |"]
    for kind in kinds:
        if kind.expect in ("unlisted", "skip"):
            outcome = "not listed" if kind.expect == "unlisted" else f"not tried ({kind.skip_reason})"
        else:
            row = rows.get(kind.file)
            outcome = "NO ROW" if row is None else row["status"] + (f" / {row['error_type']}" if row["error_type"] else "")
        lines.append(f"| {kind.name:<48} | {outcome} |")
    return "\n".join(lines)


def test_bad_input_corpus_one_row_each_and_no_crash(ray_cluster, tmp_path, monkeypatch, figures, tables):
    root = tmp_path / "in"
    kinds = build_corpus(root, tmp_path / "outside")
    listed_kinds = [kind for kind in kinds if kind.file is not None]

    # Deterministic "deleted between listing and reading": delete right after the real listing.
    real_list_inputs = run_module.list_inputs

    def list_then_delete(spec):
        listing = real_list_inputs(spec)
        (root / "deleted.png").unlink()
        return listing

    monkeypatch.setattr(run_module, "list_inputs", list_then_delete)
    spec = parse_spec({
        "name": "bad-inputs",
        "inputs": [str(root), str(root), str(root / "plain.bmp")],  # duplicates: one item each
        "output": {"path": str(tmp_path / "out")}, "model": "bicubic", "allow_errors": True,
        "stages": {"metrics": False},
        "video": {"codec": "libx264", "crf": 18, "preset": "ultrafast", "segment_seconds": 1.0},
    })
    report = run_job(spec, progress=False)

    table = item_rows(read_manifest(spec.manifest_uri))  # a good video's per-segment rows are not items
    rows = {os.path.relpath(row["input_uri"], root): row for row in table.to_pylist()}
    tables.append("bad-input corpus (one run_job, bicubic):\n" + _table(kinds, rows))
    print("\n" + tables[-1])

    # Rows == inputs: one row per listed file, none for what must not be listed, none twice.
    assert not report.missing
    assert table.num_rows == len(rows) == report.listed == len(listed_kinds), sorted(rows)
    assert sorted(rows) == sorted(kind.file for kind in listed_kinds)
    assert latest_rows(table).num_rows == table.num_rows
    failures = []
    for kind in listed_kinds:
        row = rows[kind.file]
        try:
            if kind.expect == "ok":
                assert row["status"] in ("ok", "flagged"), f"{row['status']}: {row['error_message']}"
                output = Path(row["output_uri"])
                assert output.is_file() and output.stat().st_size == row["output_size"]
                assert output.resolve().is_relative_to((tmp_path / "out").resolve())
                if kind.check:
                    kind.check(output, row)
            else:
                assert row["status"] == "error", f"expected an error row, got {row['status']}"
                if kind.error_type:
                    assert row["error_type"] == kind.error_type, row["error_message"]
                message = row["error_message"] or ""
                assert str(root / kind.file) in message, f"message does not name the file: {message!r}"
                assert "raysr bug" not in message, message
        except AssertionError as error:
            failures.append(f"{kind.name} ({kind.file!r}): {error}")
    assert not failures, "\n".join(failures)
    leftovers = [path for path in (tmp_path / "out").rglob("*") if path.name.endswith(".raysr-tmp")]
    assert not leftovers

    counts = report.counts
    statuses = [row["status"] for row in rows.values()]
    figures["bad-input kinds tried"] += len([kind for kind in kinds if kind.expect != "skip"])
    figures["bad-input kinds not tried"] += len([kind for kind in kinds if kind.expect == "skip"])
    figures["bad-input rows ok"] += statuses.count("ok") + statuses.count("flagged")
    figures["bad-input rows error"] += statuses.count("error")
    figures["items lost"] += len(report.missing)
    figures["duplicate rows"] += table.num_rows - len(rows)
    print(f"totals: {len(kinds)} kinds, {report.listed} listed, {counts['ok'] + counts['flagged']} ok, "
          f"{counts['error']} error, {len(report.missing)} lost, {table.num_rows - len(rows)} duplicated")
