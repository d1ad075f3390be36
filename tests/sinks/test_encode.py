"""Tests for raysr/sinks/encode.py: round trips through raysr's decoder and checks with Pillow directly."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from raysr.sinks.encode import EXTENSIONS, FORMATS, encode_image
from raysr.sources.decode import ImageMetadata, decode_image

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Box 3 — Straße</dc:title></x:xmpmeta>'.encode()
TAG = "raysr model=RealESRGAN_x4plus precision=fp16"
COPYRIGHT = "© Stadtarchiv Müller"
AS_READ = COPYRIGHT.encode().decode("latin-1")  # Pillow reads EXIF text as latin-1


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:164, 150:230])  # 64×80, real content


def archival_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "ScanCo", "FB-9000", 1  # Make, Model, Orientation
    exif[0x8298] = COPYRIGHT.encode()  # Copyright, UTF-8 as most software writes it
    exif[0x0131] = "ScanCo Capture 2.1"  # Software: replaced by the raysr tag
    exif[0x8769] = {0x9003: "1990:05:01 10:00:00", 0xA002: 20, 0xA003: 16}  # DateTimeOriginal, PixelX/Y
    return exif.tobytes()


def full_metadata() -> ImageMetadata:
    return ImageMetadata(format="JPEG", icc_profile=SRGB, exif=archival_exif(), xmp=XMP, dpi=(300.0, 300.0))


def png_chunks(data: bytes) -> list[bytes]:
    """Chunk types in order, checking every CRC on the way."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, kinds = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + payload), f"bad CRC in {kind}"
        kinds.append(kind)
        position += 12 + length
    return kinds


def read_exif(data: bytes) -> Image.Exif:
    return Image.open(io.BytesIO(data)).getexif()


# --- PNG ------------------------------------------------------------------------------------


def test_png_smoke(rgb):
    encoded = encode_image(rgb)
    np.testing.assert_array_equal(decode_image(encoded.data, "out.png").pixels, rgb)
    assert encoded.kept == ("tag",) and encoded.notes == ()


def test_png_keeps_all_metadata_and_scales_dpi(rgb):
    encoded = encode_image(rgb, "png", metadata=full_metadata(), scale=4.0, tag=TAG)
    assert set(encoded.kept) == {"icc", "exif", "xmp", "dpi", "tag"}
    kinds = png_chunks(encoded.data)
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert max(kinds.index(k) for k in (b"iCCP", b"pHYs", b"eXIf", b"iTXt")) < kinds.index(b"IDAT")
    # Pillow reads the chunks back under its standard names.
    image = Image.open(io.BytesIO(encoded.data))
    assert image.info["icc_profile"] == SRGB and image.info["xmp"] == XMP
    assert image.info["dpi"] == pytest.approx((1200, 1200), abs=0.1)
    exif = image.getexif()
    assert exif[0x010F] == "ScanCo" and exif[0x8298] == AS_READ and exif[0x0131] == TAG
    assert exif[0x011A] == pytest.approx(1200) and exif[0x0128] == 2  # EXIF resolution agrees with pHYs
    sub = exif.get_ifd(0x8769)
    assert sub[0x9003] == "1990:05:01 10:00:00" and (sub[0xA002], sub[0xA003]) == (80, 64)
    # And raysr's decoder reports everything, including the tag.
    decoded = decode_image(encoded.data, "out.png")
    np.testing.assert_array_equal(decoded.pixels, rgb)
    assert decoded.metadata.raysr_tag == TAG and decoded.metadata.icc_profile == SRGB
    assert decoded.metadata.xmp == XMP and decoded.metadata.dpi == pytest.approx((1200, 1200), abs=0.1)
    assert cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED) is not None


def test_png_16bit_rgb_exact():
    values = np.random.default_rng(0).integers(0, 65536, (24, 20, 3), dtype=np.uint16)
    decoded = decode_image(encode_image(values, metadata=full_metadata()).data, "o.png")
    assert decoded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(decoded.pixels, values)


def test_png_16bit_gray_exact():
    values = np.random.default_rng(1).integers(0, 65536, (24, 20), dtype=np.uint16)
    decoded = decode_image(encode_image(values).data, "o.png")
    assert decoded.pixels.dtype == np.uint16 and decoded.pixels.ndim == 2
    np.testing.assert_array_equal(decoded.pixels, values)


def test_png_packs_photos_with_rle_and_line_art_with_match_search():
    from skimage import data

    upscale = lambda image: cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # noqa: E731
    photo = np.ascontiguousarray(upscale(data.astronaut()[:200, :200]))
    text = np.ascontiguousarray(upscale(cv2.cvtColor(data.text(), cv2.COLOR_GRAY2RGB)))
    for pixels in (photo, text):  # lossless whichever strategy was picked
        np.testing.assert_array_equal(decode_image(encode_image(pixels, "png").data, "x.png").pixels, pixels)

    def size(pixels, strategy):
        return len(cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [
            cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH,
            cv2.IMWRITE_PNG_STRATEGY, strategy])[1])

    for pixels in (photo, text):  # never larger than the better of the two strategies by much
        written = len(encode_image(pixels, "png").data)
        best = min(size(pixels, cv2.IMWRITE_PNG_STRATEGY_RLE), size(pixels, cv2.IMWRITE_PNG_STRATEGY_DEFAULT))
        assert written <= best * 1.01 + 512, (written, best)
    assert size(photo, cv2.IMWRITE_PNG_STRATEGY_RLE) < size(photo, cv2.IMWRITE_PNG_STRATEGY_DEFAULT)
    assert size(text, cv2.IMWRITE_PNG_STRATEGY_RLE) > size(text, cv2.IMWRITE_PNG_STRATEGY_DEFAULT)


def test_png_rgba_kept(rgb):
    rgba = np.dstack([rgb, np.arange(rgb.shape[1], dtype=np.uint8)[None].repeat(rgb.shape[0], 0)])
    np.testing.assert_array_equal(decode_image(encode_image(rgba).data, "o.png").pixels, rgba)


@pytest.mark.parametrize("shape", [(32, 40), (32, 40, 1)])
def test_png_gray_stays_gray(shape):
    gray = np.arange(32 * 40, dtype=np.uint8).reshape(shape)
    decoded = decode_image(encode_image(gray).data, "o.png")
    assert decoded.pixels.shape == (32, 40)
    np.testing.assert_array_equal(decoded.pixels, gray.reshape(32, 40))


def test_png_non_latin_tag_survives(rgb):
    tag = "raysr model=修复 précision"
    assert decode_image(encode_image(rgb, tag=tag).data, "o.png").metadata.raysr_tag == tag


# --- TIFF (16-bit with metadata), JPEG, WebP --------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpg", "webp", "tiff"])
def test_lossy_and_tiff_keep_metadata_and_tag(rgb, fmt):
    encoded = encode_image(rgb, fmt, metadata=full_metadata(), scale=2.0, tag=TAG)
    assert {"icc", "exif", "dpi", "tag", "xmp"} <= set(encoded.kept)
    decoded = decode_image(encoded.data, "out" + EXTENSIONS[fmt])
    assert decoded.metadata.raysr_tag == TAG and decoded.metadata.icc_profile == SRGB
    assert decoded.metadata.xmp == XMP
    exif = read_exif(encoded.data)
    assert exif[0x0131] == TAG and exif[0x010F] == "ScanCo" and exif[0x8298] == AS_READ
    assert exif.get_ifd(0x8769)[0x9003] == "1990:05:01 10:00:00"
    assert exif[0x011A] == pytest.approx(600)
    if fmt != "webp":  # WebP has no DPI field of its own: EXIF carries it (checked above)
        assert decoded.metadata.dpi == pytest.approx((600, 600), abs=0.5)
    error = np.abs(decoded.pixels.astype(int) - rgb).mean()
    assert error == 0 if fmt == "tiff" else error < 4


@pytest.mark.parametrize("shape", [(24, 20, 3), (24, 20, 4), (24, 20)])
def test_tiff_16bit_exact_with_metadata(shape):
    values = np.random.default_rng(2).integers(0, 65536, shape, dtype=np.uint16)
    encoded = encode_image(values, "tiff", metadata=full_metadata(), tag=TAG)
    decoded = decode_image(encoded.data, "o.tif")
    assert decoded.pixels.dtype == np.uint16 and decoded.metadata.raysr_tag == TAG
    np.testing.assert_array_equal(decoded.pixels, values)
    if len(shape) == 3:
        assert "icc" in encoded.kept and encoded.notes == () and decoded.metadata.icc_profile == SRGB
    else:  # an RGB profile cannot describe gray pixels
        assert "icc" not in encoded.kept and "ICC" in encoded.notes[0]


def test_icc_of_the_wrong_colour_space_is_not_written(rgb):
    gray_profile = SRGB[:16] + b"GRAY" + SRGB[20:]  # only the header's colour space matters here
    encoded = encode_image(rgb, "png", metadata=ImageMetadata(icc_profile=gray_profile))
    assert "icc" not in encoded.kept and b"iCCP" not in png_chunks(encoded.data)
    assert any("GRAY ICC profile dropped" in note for note in encoded.notes)


@pytest.mark.parametrize("shape", [(300, 20, 3), (24, 20, 4), (24, 20)])
def test_tiff_8bit_exact_and_readable_by_other_readers(shape):
    values = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(values, "tiff").data
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), values)
    tifffile = pytest.importorskip("tifffile")
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(data)), values)


def test_16bit_to_jpg_narrows_with_a_note(rgb):
    wide = rgb.astype(np.uint16) * 257
    encoded = encode_image(wide, "jpg", quality=100)
    assert any("16-bit" in note for note in encoded.notes)
    assert np.abs(decode_image(encoded.data, "o.jpg").pixels.astype(int) - rgb).mean() < 2


def test_jpg_drops_alpha_with_a_note(rgb):
    encoded = encode_image(np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]), "jpg")
    assert any("alpha" in note for note in encoded.notes)
    assert decode_image(encoded.data, "o.jpg").pixels.shape == rgb.shape


def test_webp_keeps_alpha_and_is_lossless_at_100(rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    np.testing.assert_array_equal(decode_image(encode_image(rgba, "webp", quality=100).data, "o.webp").pixels, rgba)


def test_oversized_jpeg_exif_is_dropped_not_fatal(rgb):
    exif = Image.Exif()
    exif[0x010F] = "ScanCo"
    exif[0x8769] = {0x927C: b"\x00" * 70_000}  # a huge MakerNote
    encoded = encode_image(rgb, "jpg", metadata=ImageMetadata(exif=exif.tobytes()), tag=TAG)
    assert "exif" not in encoded.kept and any("EXIF" in note for note in encoded.notes)
    assert decode_image(encoded.data, "o.jpg").metadata.raysr_tag == TAG


def test_decode_then_encode_keeps_a_jpeg_scans_metadata(rgb):
    source = io.BytesIO()
    Image.fromarray(rgb).save(source, "JPEG", quality=95, icc_profile=SRGB, exif=archival_exif(), dpi=(300, 300))
    decoded = decode_image(source.getvalue(), "scan.jpg")
    for fmt in FORMATS:
        again = decode_image(encode_image(decoded.pixels, fmt, 95, decoded.metadata, 2.0, TAG).data, "o")
        assert again.metadata.icc_profile == SRGB and again.metadata.raysr_tag == TAG
        assert fmt == "webp" or again.metadata.dpi == pytest.approx((600, 600), abs=0.5)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pixels, options, message",
    [
        (np.zeros((8, 8, 3), np.uint8), {"fmt": "gif"}, "output format"),
        (np.zeros((8, 8, 3), np.float32), {}, "uint8 or uint16"),
        (np.zeros((8, 8, 2), np.uint8), {}, "shape"),
        (np.zeros((0, 8, 3), np.uint8), {}, "shape"),
        (np.zeros((8, 8, 3), np.uint8), {"fmt": "jpg", "quality": 0}, "quality"),
        (np.zeros((8, 8, 3), np.uint8), {"scale": 0}, "scale"),
        (np.zeros((8, 16_400, 3), np.uint8), {"fmt": "webp"}, "16383"),
    ],
)
def test_bad_arguments_raise_value_error(pixels, options, message):
    with pytest.raises(ValueError, match=message):
        encode_image(pixels, **options)
