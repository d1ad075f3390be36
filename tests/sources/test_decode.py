"""Tests for raysr/sources/decode.py: every input is generated here, nothing is downloaded."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from raysr.sources.decode import TIFF_LAYOUT_TAGS, DecodedImage, DecodeError, ImageMetadata, decode_image, read_raysr_tag

NAME = "archive/box 3/scan ü.png"
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A real, non-symmetric 48×64 RGB crop (scikit-image's astronaut), uint8."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:148, 150:214])


def save(array_or_image, fmt: str, **options) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, color_type: int, depth: int, rows: list[bytes]) -> bytes:
    """A PNG built chunk by chunk, for layouts no encoder here writes (16-bit gray+alpha, bomb headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refused(data: bytes, name: str = NAME, **limits) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_image(data, name, **limits)
    assert name in str(caught.value), "every message names the file"
    return caught.value


# --- refusals -------------------------------------------------------------------------------


def test_empty_file():
    error = refused(b"")
    assert error.kind == "empty" and "0 bytes" in str(error)


def test_truncated_png(rgb):
    data = save(rgb, "PNG")
    assert refused(data[: len(data) // 2]).kind == "truncated"
    assert refused(data[:40]).kind == "truncated"  # cut inside the header: still "a damaged PNG"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.5, 0.9, 300])
def test_truncated_jpeg_is_refused_not_grey_filled(rgb, progressive, keep):
    data = save(rgb, "JPEG", quality=90, progressive=progressive)
    cut = data[: int(len(data) * keep) if keep < 1 else keep]
    assert refused(cut).kind == "truncated"


def test_truncated_jpeg_refused_even_when_pillow_is_told_to_accept_it(rgb, monkeypatch):
    # Other libraries flip this process-wide switch; Pillow then grey-fills cut-off JPEGs.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = save(rgb, "JPEG", quality=90)
    assert refused(data[: len(data) * 2 // 3]).kind == "truncated"
    assert decode_image(data, NAME).pixels.shape == rgb.shape  # the whole file still decodes


def test_text_file_named_png():
    error = refused(b"just some notes about the scans\nbox 3, 1990\n", "notes.png")
    assert error.kind == "not_an_image" and "text" in str(error)


def test_html_error_page_saved_as_jpg():
    page = b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>denied</body></html>"
    error = refused(page, "photo.jpg")
    assert error.kind == "not_an_image" and "HTML" in str(error)


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert refused(b"\x00\x01" + data).kind == "not_an_image"


@pytest.mark.parametrize("size", [(1, 1), (15, 15), (15, 400)])
def test_too_small(size):
    error = refused(save(np.zeros((*size, 3), np.uint8), "PNG"))
    assert error.kind == "too_small" and "min_side" in str(error)


def test_min_side_is_a_limit_not_a_constant():
    assert decode_image(save(np.zeros((8, 8, 3), np.uint8), "PNG"), NAME, min_side=8).pixels.shape == (8, 8, 3)


def test_bomb_header_refused_before_decoding():
    # IHDR claims 60000×60000 (valid CRC) but only a few bytes of IDAT follow: if anything
    # decoded the pixels the result would be "truncated", not "too_large".
    data = raw_png(60_000, 60_000, 2, 8, [b"\x00" * 8])
    error = refused(data)
    assert error.kind == "too_large" and "60000x60000" in str(error) and "max_pixels" in str(error)


def test_max_pixels_is_a_limit(rgb):
    assert refused(save(rgb, "PNG"), max_pixels=1000).kind == "too_large"


def test_float32_tiff_is_unsupported_with_a_clear_message():
    gray = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    error = refused(save(gray, "TIFF"), "scan.tif")
    assert error.kind == "unsupported" and "floating-point" in str(error) and "16-bit" in str(error)


def test_float32_rgb_tiff_is_unsupported_not_unknown():
    tifffile = pytest.importorskip("tifffile")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ones((32, 32, 3), np.float32), photometric="rgb")
    error = refused(buffer.getvalue(), "scan.tif")
    assert error.kind == "unsupported" and "float32" in str(error)


def test_damaged_files_never_raise_anything_but_decode_error(rgb):
    """Cut and corrupt files of every format at many places: a DecodeError or pixels, nothing else."""
    rng = np.random.default_rng(1)
    small = rgb[:24, :24]
    _heif_opener()
    files = [save(small, fmt) for fmt in ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP", "HEIF", "AVIF", "JPEG2000")]
    files.append(save(small, "JPEG", exif=exif_with(orientation=6), icc_profile=SRGB))
    for data in files:
        variants = [data[:cut] for cut in rng.integers(1, len(data), 12)]
        for _ in range(12):
            flipped = bytearray(data)
            flipped[int(rng.integers(0, min(len(data), 200)))] ^= 0xFF
            variants.append(bytes(flipped))
        for variant in variants:
            try:
                result = decode_image(variant, NAME)
            except DecodeError as error:
                assert error.kind in {"empty", "not_an_image", "truncated", "too_small", "too_large", "unsupported"}
            else:
                assert isinstance(result, DecodedImage) and result.pixels.dtype in (np.uint8, np.uint16)


# --- pixel layouts --------------------------------------------------------------------------


def test_rgb_png_smoke(rgb):
    decoded = decode_image(save(rgb, "PNG"), NAME)
    np.testing.assert_array_equal(decoded.pixels, rgb)
    assert decoded.bit_depth == 8 and decoded.channels == 3 and decoded.metadata.format == "PNG"


def test_16bit_rgb_png_exact():
    values = np.random.default_rng(2).integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    ok, png = cv2.imencode(".png", cv2.cvtColor(values, cv2.COLOR_RGB2BGR))
    decoded = decode_image(png.tobytes(), NAME)
    assert decoded.pixels.dtype == np.uint16 and decoded.bit_depth == 16
    np.testing.assert_array_equal(decoded.pixels, values)


def test_16bit_gray_png_exact():
    values = np.random.default_rng(3).integers(0, 65536, (20, 24), dtype=np.uint16)
    ok, png = cv2.imencode(".png", values)
    decoded = decode_image(png.tobytes(), NAME)
    assert decoded.pixels.dtype == np.uint16 and decoded.pixels.ndim == 2
    np.testing.assert_array_equal(decoded.pixels, values)


def test_16bit_gray_alpha_png_becomes_16bit_rgba():
    gray = np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 130
    alpha = np.full_like(gray, 40_000)
    rows = [np.dstack([gray, alpha])[y].astype(">u2").tobytes() for y in range(20)]
    decoded = decode_image(raw_png(24, 20, 4, 16, rows), NAME)
    assert decoded.pixels.dtype == np.uint16 and decoded.pixels.shape == (20, 24, 4)
    np.testing.assert_array_equal(decoded.pixels[..., 0], gray)
    np.testing.assert_array_equal(decoded.pixels[..., 3], alpha)


def test_16bit_rgb_tiff_exact():
    values = np.random.default_rng(4).integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    ok, tif = cv2.imencode(".tif", cv2.cvtColor(values, cv2.COLOR_RGB2BGR))
    decoded = decode_image(tif.tobytes(), "scan.tif")
    np.testing.assert_array_equal(decoded.pixels, values)


def test_palette_png_with_transparency_becomes_rgba():
    indices = np.zeros((20, 20), np.uint8)
    indices[5:15, 5:15] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    decoded = decode_image(save(image, "PNG", transparency=0), NAME)
    assert decoded.pixels.shape == (20, 20, 4) and "P→RGBA" in decoded.metadata.notes
    assert decoded.pixels[0, 0, 3] == 0 and tuple(decoded.pixels[10, 10]) == (255, 0, 0, 255)


def test_la_gray_alpha_becomes_rgba():
    la = np.dstack([np.arange(400, dtype=np.uint8).reshape(20, 20), np.full((20, 20), 77, np.uint8)])
    decoded = decode_image(save(Image.fromarray(la, "LA"), "PNG"), NAME)
    assert decoded.pixels.shape == (20, 20, 4)
    for channel in range(3):
        np.testing.assert_array_equal(decoded.pixels[..., channel], la[..., 0])
    assert (decoded.pixels[..., 3] == 77).all()


def test_gray_stays_gray(rgb):
    gray = rgb[..., 1].copy()
    decoded = decode_image(save(gray, "PNG"), NAME)
    assert decoded.pixels.ndim == 2 and decoded.channels == 1
    np.testing.assert_array_equal(decoded.pixels, gray)


def test_cmyk_jpeg_becomes_rgb(rgb):
    data = save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    decoded = decode_image(data, "scan.jpg")
    assert decoded.pixels.shape == rgb.shape and "CMYK→RGB" in decoded.metadata.notes
    assert np.abs(decoded.pixels.astype(int) - rgb).mean() < 6


def test_icc_that_does_not_describe_the_pixels_is_dropped(rgb):
    # An RGB profile on CMYK data: passing it on would make viewers mis-render the output.
    data = save(Image.fromarray(rgb).convert("CMYK"), "JPEG", icc_profile=SRGB)
    decoded = decode_image(data, "scan.jpg")
    assert decoded.metadata.icc_profile is None and any("ICC" in note for note in decoded.metadata.notes)


def test_progressive_jpeg(rgb):
    decoded = decode_image(save(rgb, "JPEG", quality=95, progressive=True), "p.jpg")
    assert decoded.pixels.shape == rgb.shape and np.abs(decoded.pixels.astype(int) - rgb).mean() < 4


def test_animated_gif_first_frame():
    frames = [Image.fromarray(np.full((20, 20, 3), value, np.uint8)) for value in (10, 120, 240)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(buffer.getvalue(), "anim.gif")
    assert "first of 3 frames" in decoded.metadata.notes
    assert np.abs(decoded.pixels.astype(int)[..., :3] - 10).max() <= 2


def test_multipage_tiff_first_page(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "TIFF", save_all=True, append_images=[Image.fromarray(255 - rgb)])
    decoded = decode_image(buffer.getvalue(), "pages.tif")
    np.testing.assert_array_equal(decoded.pixels, rgb)
    assert "first of 2 frames" in decoded.metadata.notes


def test_webp_with_alpha_lossless(rgb):
    rgba = np.dstack([rgb, np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None].repeat(rgb.shape[0], 0)])
    decoded = decode_image(save(rgba, "WEBP", lossless=True, exact=True), "a.webp")
    np.testing.assert_array_equal(decoded.pixels, rgba)


def test_bmp(rgb):
    np.testing.assert_array_equal(decode_image(save(rgb, "BMP"), "a.bmp").pixels, rgb)


# --- metadata and orientation ---------------------------------------------------------------


def exif_with(orientation: int = 1, **tags) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "ScanCo"  # Make
    for tag, value in tags.items():
        exif[int(tag.lstrip("t"))] = value
    return exif.tobytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_icc_profile_kept(rgb, fmt):
    decoded = decode_image(save(rgb, fmt, icc_profile=SRGB), NAME)
    assert decoded.metadata.icc_profile == SRGB


@pytest.mark.parametrize("orientation", [3, 6])
def test_exif_rotated_jpeg_is_upright(rgb, orientation):
    data = save(rgb, "JPEG", quality=95, exif=exif_with(orientation))
    decoded = decode_image(data, "r.jpg")
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(decoded.pixels, upright)
    expected_shape = (rgb.shape[1], rgb.shape[0], 3) if orientation == 6 else rgb.shape
    assert decoded.pixels.shape == expected_shape
    exif = Image.Exif()
    exif.load(decoded.metadata.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "ScanCo"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(rgb, orientation):
    data = save(rgb, "PNG", exif=exif_with(orientation))  # lossless: exact comparison
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(decode_image(data, NAME).pixels, expected)


def test_orientation_applies_to_16bit_pixels():
    values = np.random.default_rng(5).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    ok, png = cv2.imencode(".png", cv2.cvtColor(values, cv2.COLOR_RGB2BGR))
    png = png.tobytes()
    eXIf = png_chunk(b"eXIf", exif_with(6)[6:])
    decoded = decode_image(png[:33] + eXIf + png[33:], NAME)
    np.testing.assert_array_equal(decoded.pixels, np.rot90(values, -1))


def test_dpi_xmp_and_raysr_tag_read(rgb):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>")
    info.add_text("raysr", "raysr model=x4")
    decoded = decode_image(save(rgb, "PNG", dpi=(300, 300), pnginfo=info), NAME)
    assert decoded.metadata.dpi == pytest.approx((300, 300), abs=0.01)
    assert decoded.metadata.xmp == b"<x:xmpmeta/>" and decoded.metadata.raysr_tag == "raysr model=x4"


def test_tiff_without_resolution_has_no_dpi(rgb):
    tifffile = pytest.importorskip("tifffile")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb, resolution=None)
    assert decode_image(buffer.getvalue(), "a.tif").metadata.dpi in (None, (72.0, 72.0))


def test_tiff_exif_keeps_descriptions_not_layout(rgb):
    data = save(rgb, "TIFF", tiffinfo={270: "Box 3, 1990", 33432: "City Archive"}, dpi=(600, 600))
    metadata = decode_image(data, "a.tif").metadata
    exif = Image.Exif()
    exif.load(metadata.exif)
    assert exif[270] == "Box 3, 1990" and exif[33432] == "City Archive"
    assert not TIFF_LAYOUT_TAGS & set(exif), "strip offsets, sizes etc. must not travel to the output"
    assert metadata.dpi == pytest.approx((600, 600))


def test_malformed_exif_is_dropped_not_fatal(rgb):
    data = save(rgb, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff garbage")
    decoded = decode_image(data, NAME)
    assert decoded.pixels.shape == rgb.shape


def test_non_ascii_exif_text_survives(rgb):
    # Pillow would write "Müller" back as "M?ller"; archivists' names and captions must survive.
    exif = Image.Exif()
    exif[0x013B] = "Jürgen Müller".encode()  # Artist, UTF-8 bytes as most software writes them
    exif[0x8769] = {0x9286: b"UNICODE\x00" + "Straße".encode("utf-16-be")}  # UserComment
    source = save(rgb, "JPEG", exif=exif.tobytes())
    kept = Image.Exif()
    kept.load(decode_image(source, NAME).metadata.exif)
    original = Image.open(io.BytesIO(source)).getexif()
    assert kept[0x013B] == original[0x013B] == "Jürgen Müller".encode().decode("latin-1")
    assert kept.get_ifd(0x8769)[0x9286] == original.get_ifd(0x8769)[0x9286]


def test_orientation_applies_to_16bit_tiff():
    tifffile = pytest.importorskip("tifffile")
    values = np.random.default_rng(6).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), "scan.tif").pixels, np.rot90(values, -1))


@pytest.mark.parametrize("orientation", [2, 3, 5, 8])
def test_every_orientation_of_16bit_tiff_and_png(orientation):
    tifffile = pytest.importorskip("tifffile")
    values = np.random.default_rng(orientation).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    reference = Image.fromarray((values >> 8).astype(np.uint8))
    reference.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(reference))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    ok, png = cv2.imencode(".png", cv2.cvtColor(values, cv2.COLOR_RGB2BGR))
    png = png.tobytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    png = png[:33] + png_chunk(b"eXIf", exif.tobytes()[6:]) + png[33:]
    for data in (buffer.getvalue(), png):
        pixels = decode_image(data, NAME).pixels
        np.testing.assert_array_equal(pixels >> 8, expected)


# --- HEIC/HEIF and AVIF ---------------------------------------------------------------------


def _heif_opener():
    from pillow_heif import register_heif_opener

    register_heif_opener()  # this test writes HEIF; raysr.sources.decode registers it for reading


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_decode_upright_with_their_metadata(rgb, fmt):
    """A HEIC stores its rotation as HEIF transforms, an AVIF as transforms Pillow turns into
    EXIF; either way the pixels come out upright once, with EXIF (orientation reset) kept."""
    _heif_opener()
    data = save(rgb, fmt, quality=95, exif=exif_with(orientation=6), icc_profile=SRGB)
    decoded = decode_image(data, "phone/IMG_0001." + fmt.lower())
    upright = np.rot90(rgb, -1)  # orientation 6: turn 90° clockwise to display
    assert decoded.pixels.shape == upright.shape and decoded.pixels.dtype == np.uint8
    assert np.abs(decoded.pixels.astype(int) - upright).mean() < 4, "lossy, but the same picture the same way up"
    assert decoded.metadata.format == fmt
    assert decoded.metadata.icc_profile == SRGB
    exif = Image.Exif()
    exif.load(decoded.metadata.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "ScanCo"


def test_heic_named_jpg_is_read_by_its_content(rgb):
    _heif_opener()
    decoded = decode_image(save(rgb, "HEIF", quality=90), "renamed.jpg")
    assert decoded.metadata.format == "HEIF" and decoded.pixels.shape == rgb.shape


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_cut_heif_and_avif_are_truncated_not_unknown(rgb, fmt):
    _heif_opener()
    data = save(rgb, fmt, quality=90)
    for cut in (40, len(data) // 2, len(data) - 10):
        error = refused(data[:cut])
        assert error.kind == "truncated" and "re-copy" in str(error), (cut, error)


def test_10bit_heif_stays_deep():
    """pillow-heif's Pillow plugin narrows a 10-bit HEIF to 8 bits; raysr keeps it as 16-bit."""
    import pillow_heif

    ramp = (np.arange(64 * 48 * 3, dtype=np.uint32).reshape(64, 48, 3) * 7 % 65536).astype(np.uint16)
    buffer = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(48, 64), data=ramp.tobytes()).save(buffer, quality=-1, format="HEIF")
    decoded = decode_image(buffer.getvalue(), "hdr.heic")
    assert decoded.pixels.dtype == np.uint16 and decoded.pixels.shape == (64, 48, 3)
    # Lossless at 10 bits: within a 10-bit step of the 16-bit ramp it was made from.
    assert np.abs(decoded.pixels.astype(int) - ramp).max() <= 64 * 2


def test_10bit_heif_is_upright_too():
    import pillow_heif

    stored = np.zeros((64, 48, 3), np.uint16)
    stored[:8, :8] = 65535  # a white block top-left; orientation 6 shows it top-right
    buffer = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(48, 64), data=stored.tobytes()).save(
        buffer, quality=-1, format="HEIF", exif=exif_with(orientation=6))
    pixels = decode_image(buffer.getvalue(), "hdr.heic").pixels
    assert pixels.shape == (48, 64, 3) and pixels[:8, -8:].min() > 60000 and pixels[:8, :8].max() < 5000


def test_heif_xmp_is_kept():
    _heif_opener()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    assert decode_image(save(np.zeros((32, 32, 3), np.uint8), "HEIF", xmp=xmp), "x.heic").metadata.xmp == xmp


def test_heic_without_pillow_heif_says_what_to_install(rgb, monkeypatch):
    """A node whose image lacks pillow-heif: the row says what to install, not "not an image"."""
    import raysr.sources.decode as decode

    _heif_opener()
    data = save(rgb, "HEIF", quality=90)
    monkeypatch.setattr(decode, "register_heif_opener", None)
    monkeypatch.setattr(Image, "ID", [plugin for plugin in Image.ID if plugin != "HEIF"])  # as if never registered
    error = refused(data)
    assert error.kind == "unsupported" and "pip install pillow-heif" in str(error)


# --- JPEG 2000 (archives' scan masters) -----------------------------------------------------


def test_16bit_rgb_jpeg2000_stays_16bit():
    """Pillow reads 16-bit colour JPEG 2000 as 8 bits; a scan master must not lose them."""
    rgb16 = np.random.default_rng(3).integers(0, 65536, (128, 96, 3), dtype=np.uint16)
    ok, encoded = cv2.imencode(".jp2", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 1000])
    assert ok
    decoded = decode_image(encoded.tobytes(), "master.jp2")
    assert decoded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(decoded.pixels, rgb16)  # lossless at compression 1000


@pytest.mark.parametrize("codestream_only", [False, True])
def test_8bit_and_16bit_gray_jpeg2000_are_exact(rgb, codestream_only):
    gray16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    for pixels in (rgb, gray16):
        data = save(pixels, "JPEG2000", irreversible=False, no_jp2=codestream_only)
        decoded = decode_image(data, "scan.j2k" if codestream_only else "scan.jp2")
        assert decoded.pixels.dtype == pixels.dtype
        np.testing.assert_array_equal(decoded.pixels, pixels)


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
def test_read_raysr_tag_finds_the_tag_of_every_output_format_without_decoding(tmp_path, fmt):
    from raysr.sinks.encode import EXTENSIONS, encode_image

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    path = tmp_path / f"out{EXTENSIONS[fmt]}"
    path.write_bytes(encode_image(pixels, fmt, 90, ImageMetadata(), 1.0, tag="raysr model=m settings=abc").data)
    assert read_raysr_tag(path) == "raysr model=m settings=abc"


def test_read_raysr_tag_is_none_for_untagged_damaged_or_missing_files(tmp_path):
    plain = tmp_path / "plain.png"
    cv2.imwrite(str(plain), np.zeros((8, 8, 3), np.uint8))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    assert [read_raysr_tag(path) for path in (plain, garbage, tmp_path / "missing.png")] == [None, None, None]
