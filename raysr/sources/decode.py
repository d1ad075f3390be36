"""Decode and validate image bytes into gray/RGB(A) numpy pixels plus the metadata to keep.

Pillow reads headers, metadata and most pixel formats; OpenCV decodes 16-bit
colour PNG/TIFF, which Pillow narrows to 8 bits. OpenCV never decodes JPEG: it
grey-fills a cut-off JPEG silently. Every refusal is a :class:`DecodeError`
whose ``kind`` the manifest records and whose message names the file and says
what to do; no input, however damaged, raises anything else (but MemoryError).
Floating-point pixels (mode ``F``, float TIFFs) are refused as ``unsupported``:
their range (0–1? 0–65535? HDR?) is undefined, so any integer mapping would guess.

HEIC/HEIF (phones' photos) decode through pillow-heif's Pillow plugin, AVIF through
Pillow's own; both come out upright like every other format (libheif applies a HEIF's
rotation and mirroring and pillow-heif resets its EXIF orientation, Pillow turns an
AVIF's into the EXIF orientation applied below); a 10- or 12-bit HEIF comes out 16-bit.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError, features

from raysr.sources._deep import decode_heif_16bit, decode_opencv_16bit, heif_is_deep, opencv_reads_deeper

try:
    from pillow_heif import register_heif_opener
except ImportError:  # a dependency, but a cluster node's own image may lack it: HEIC inputs then say so
    register_heif_opener = None

MIN_SIDE_PX = 16
MAX_PIXELS = 40_000 * 40_000 // 4  # 400 MP: beyond this a header is treated as a decompression bomb
RAYSR_TAG = "raysr"
_EXIF_ORIENTATION = 0x0112
_EXIF_SOFTWARE = 0x0131
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_SRGB = ImageCms.createProfile("sRGB")

# TIFF inputs expose their whole IFD0 as EXIF. Dropped from it: pixel layout (sizes, strips,
# compression), what travels separately (XMP 700, ICC 34675), stale Photoshop layers (34377, 37724).
TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284,
    290, 291, 292, 293, 317, 320, 322, 323, 324, 325, 330, 332, 338, 339, 340, 341, 347,
    513, 514, 529, 530, 531, 532, 700, 34377, 34675, 37724,
})

# Pillow's own bomb check would refuse 179–400 MP images before we can read their size;
# decode_image applies ``max_pixels`` itself, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
if register_heif_opener is not None:
    register_heif_opener()  # Pillow opens HEIC/HEIF from here on, in every process that decodes

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
)
# ISO base media files (bytes 4–12: ``ftyp`` + major brand) holding still images.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_NOT_IMAGE_HINTS = (
    ((b"<!doctype html", b"<html", b"<head"), "it is an HTML page, e.g. a saved error page; download it again"),
    ((b"<svg", b"<?xml"), "it is XML/SVG (vector), not a raster image; rasterise it first"),
    ((b"%pdf",), "it is a PDF; export its pages as PNG or TIFF"),
    ((b"version https://git-lfs",), "it is a Git LFS pointer; run `git lfs pull` in the source repository"),
)


class DecodeError(ValueError):
    """An input cannot become pixels.

    Attributes:
        kind: short machine-readable cause: ``empty``, ``not_an_image``,
            ``truncated``, ``too_small``, ``too_large``, ``unsupported``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ImageMetadata:
    """What the output should carry over from the input.

    Attributes:
        format: container format as Pillow names it (``PNG``, ``JPEG`` …).
        icc_profile: embedded ICC profile bytes.
        exif: EXIF block (``Exif\\0\\0`` + TIFF header + IFDs) with orientation
            reset to 1 (pixels are already upright) and TIFF layout tags dropped.
        xmp: XMP packet bytes.
        dpi: (x, y) pixels per inch; ``None`` when absent or a placeholder (≤ 1).
        raysr_tag: the raysr marker found in the input (it was made by raysr).
        notes: conversions made on read (``P→RGBA``, ``first of 12 frames``).
    """

    format: str = ""
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    raysr_tag: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class DecodedImage:
    """Pixels (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; uint8 or uint16; upright."""

    pixels: np.ndarray
    metadata: ImageMetadata

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else self.pixels.shape[2]


# EXIF orientation → (transpose, flip rows, flip columns), as Pillow's ``exif_transpose``.
_ORIENTATIONS = {2: (0, 0, 1), 3: (0, 1, 1), 4: (0, 1, 0), 5: (1, 0, 0), 6: (1, 0, 1), 7: (1, 1, 1), 8: (1, 1, 0)}


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Make (H, W[, C]) pixels upright for an EXIF orientation 1–8."""
    if orientation not in _ORIENTATIONS:
        return pixels
    transpose, flip_rows, flip_columns = _ORIENTATIONS[orientation]
    pixels = np.swapaxes(pixels, 0, 1) if transpose else pixels
    return np.ascontiguousarray(pixels[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1])


def _not_an_image(data: bytes, name: str) -> DecodeError:
    """Classify bytes Pillow cannot identify: damaged known format, unsupported layout, or not an image."""
    kind = next((fmt for magic, fmt in _SIGNATURES if data.startswith(magic)), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS + _AVIF_BRANDS:
        kind = "HEIF" if data[8:12] in _HEIF_BRANDS else "AVIF"
        if kind == "AVIF" and not features.check("avif"):
            return DecodeError("unsupported", f"{name}: this Pillow cannot read AVIF; "
                               "install Pillow 11.3 or later (`pip install -U pillow`) where raysr runs")
        if kind == "HEIF" and register_heif_opener is None:
            return DecodeError("unsupported", f"{name}: reading HEIC/HEIF needs pillow-heif, which is not "
                               "installed where raysr runs; `pip install pillow-heif` (a raysr dependency)")
        # OpenCV reads neither reliably (and logs its own errors): the header is what failed.
        return DecodeError("truncated", f"{name}: starts like a {kind} but its header is damaged or cut off; "
                           "re-copy it from the source")
    if kind:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is not None:  # intact, but a layout Pillow does not read (e.g. float RGB TIFF)
            return DecodeError("unsupported", f"{name}: {kind} with {pixels.dtype} samples is not supported; "
                               "export it as 8/16-bit integer PNG or TIFF")
        return DecodeError("truncated", f"{name}: starts like a {kind} but its header is damaged or cut off; "
                           "re-copy it from the source")
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    hint = next((text for prefixes, text in _NOT_IMAGE_HINTS if head.startswith(prefixes)), None)
    text = data[:512].decode("utf-8", "replace")  # the cut at 512 bytes may split one character
    if hint is None and text.count("\ufffd") <= 1 and all(c.isprintable() or c in "\r\n\t\ufffd" for c in text):
        hint = "it is a text file"
    detail = f" ({hint})" if hint else "; check that it is an image and re-export it as PNG, JPEG or TIFF"
    return DecodeError("not_an_image", f"{name}: not a readable image format{detail}")


def _jpeg_complete(data: bytes) -> bool:
    """An end-of-image marker follows the last scan (it cannot occur in entropy-coded data).

    Pillow refuses cut-off JPEGs only while ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False,
    a process-wide switch other libraries set; this check does not depend on it.
    """
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) >= 0


def _pillow_pixels(image: Image.Image, name: str, notes: list[str]) -> np.ndarray:
    mode = image.mode
    transparent = "transparency" in image.info
    if mode in ("RGB", "L") and not transparent or mode == "RGBA":
        return np.asarray(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise DecodeError("unsupported", f"{name}: 32-bit integer pixels exceed 0–65535; convert to 16-bit")
        notes.append("I→16-bit gray")
        return array.astype(np.uint16)
    if mode == "1":
        notes.append("1→L")
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA", "LA", "La", "RGBa", "RGBX", "L", "RGB"):
        target = "RGBA" if mode in ("PA", "LA", "La", "RGBa") or transparent else "RGB"
        notes.append(f"{mode}→{target}")
        return np.asarray(image.convert(target))
    if mode == "CMYK" and _icc_space(image.info.get("icc_profile")) == b"CMYK":
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            rgb = ImageCms.profileToProfile(image, profile, _SRGB, outputMode="RGB")
            notes.append("CMYK→sRGB via the embedded ICC profile")
            return np.asarray(rgb)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to Pillow's naive conversion
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{mode}→RGB")
        return np.asarray(image.convert("RGB"))
    what = "32-bit floating-point" if mode == "F" else f"Pillow mode {mode}"
    raise DecodeError("unsupported", f"{name}: {what} pixels are not supported; export as 8/16-bit PNG or TIFF")


def _icc_space(icc: bytes | None) -> bytes | None:
    """The colour space an ICC profile applies to (``RGB ``, ``GRAY``, ``CMYK`` …), from its header."""
    return bytes(icc[16:20]) if icc and len(icc) >= 128 else None


def exif_text(value):
    """An EXIF value ready to write: non-ASCII text as bytes, recursively through sub-IFD dicts.

    Pillow reads EXIF text as latin-1 but writes str as ASCII with '?' for every other
    character ("Müller" → "M?ller"); as bytes it writes the original bytes back unchanged.
    """
    if isinstance(value, dict):
        return {key: exif_text(item) for key, item in value.items()}
    if isinstance(value, str) and not value.isascii():
        return value.encode("latin-1") if max(map(ord, value)) < 256 else value.encode()
    return value


def _clean_exif(exif: Image.Exif) -> Image.Exif:
    """A standalone copy: sub-IFDs resolved, layout tags dropped, orientation 1."""
    clean = Image.Exif()
    for tag, value in exif.items():
        if tag in TIFF_LAYOUT_TAGS:
            continue
        if tag in (_EXIF_IFD, _GPS_IFD):
            value = dict(exif.get_ifd(tag))
            if tag == _EXIF_IFD and _INTEROP_IFD in value and not isinstance(value[_INTEROP_IFD], dict):
                value[_INTEROP_IFD] = exif.get_ifd(_INTEROP_IFD)
        clean[tag] = exif_text(value)
    if _EXIF_ORIENTATION in clean:
        clean[_EXIF_ORIENTATION] = 1
    return clean


def _read_metadata(image: Image.Image, loaded: bool) -> tuple[ImageMetadata, int]:
    """Metadata and EXIF orientation; a damaged block is dropped with a note, never fatal."""
    metadata, orientation = ImageMetadata(format=image.format or ""), 1
    info = image.info
    icc = info.get("icc_profile")
    metadata.icc_profile = bytes(icc) if icc else None
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    metadata.xmp = (xmp.encode() if isinstance(xmp, str) else bytes(xmp)) if xmp else None
    dpi = info.get("dpi") if image.format != "TIFF" or 282 in image.tag_v2 else None  # Pillow says (1, 1)
    try:
        if dpi and float(dpi[0]) > 1 and float(dpi[1]) > 1:  # 0 or 1: a placeholder, not a scan resolution
            metadata.dpi = (float(dpi[0]), float(dpi[1]))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        metadata.notes.append("unreadable DPI dropped")
    tag = info.get(RAYSR_TAG)
    try:
        if image.format == "PNG" and not loaded:  # PngImageFile.getexif() would decode the pixels again
            exif = Image.Exif()
            exif.load(info.get("exif") or b"")
        else:
            exif = image.getexif()
        orientation = exif.get(_EXIF_ORIENTATION)
        orientation = orientation if orientation in range(1, 9) else 1  # absent, garbage or a tuple
        software = exif.get(_EXIF_SOFTWARE)
        if not tag and isinstance(software, str) and software.startswith(RAYSR_TAG):
            raw = software.encode("latin-1")  # raysr writes a non-latin-1 tag as UTF-8
            tag = raw.decode("utf-8", "ignore") if raw.decode("utf-8", "ignore").encode() == raw else software
        clean = _clean_exif(exif)
        metadata.exif = clean.tobytes() if len(clean) else None
    except Exception as error:  # noqa: BLE001 - malformed EXIF comes in endless shapes
        metadata.notes.append(f"unreadable EXIF dropped ({type(error).__name__})")
    metadata.raysr_tag = str(tag) if tag else None
    try:
        frames = getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001 - a damaged later frame does not spoil the first
        frames = "?"
    if frames != 1:
        metadata.notes.append(f"first of {frames} frames")
    return metadata, orientation


def read_raysr_tag(path: str | Path) -> str | None:
    """The raysr marker an image file carries (PNG text chunk, or EXIF Software), read from its header
    without decoding pixels; ``None`` when it has none or cannot be read."""
    try:
        with Image.open(path) as image:
            return _read_metadata(image, loaded=False)[0].raysr_tag
    except Exception:  # noqa: BLE001 - any unreadable file simply carries no tag
        return None


def decode_image(
    data: bytes, name: str, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE_PX
) -> DecodedImage:
    """Decode one input file's bytes into upright pixels and the metadata to keep.

    Args:
        data: the file's bytes.
        name: the item's URI, used in error messages.
        max_pixels: headers claiming more pixels are refused before decoding.
        min_side: images with a side shorter than this are refused.

    Returns:
        :class:`DecodedImage`: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA,
        uint8 or uint16; EXIF orientation already applied.

    Raises:
        DecodeError: with ``kind`` and a message naming ``name``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = _decode(data, name, max_pixels, min_side)
    seen = dict.fromkeys(f"decoder warning: {warning.message}" for warning in caught)
    decoded.metadata.notes += list(seen)[:3]  # e.g. "Corrupt EXIF data", for the manifest
    return decoded


def _decode(data: bytes, name: str, max_pixels: int, min_side: int) -> DecodedImage:
    # 1. Header: identify the format and size without decoding pixels.
    if not data:
        raise DecodeError("empty", f"{name}: file is empty (0 bytes); re-copy it from the source")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _not_an_image(data, name) from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on damaged headers
        message = f"{name}: image header is damaged ({error}); re-copy it from the source"
        raise DecodeError("truncated", message) from None
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError("too_large", f"{name}: header claims {width}x{height} = {width * height / 1e6:.0f} MP, "
                          f"over the {max_pixels / 1e6:.0f} MP limit (possible decompression bomb); "
                          "raise limits.max_pixels if it is genuine")
    if min(width, height) < min_side:
        raise DecodeError("too_small", f"{name}: {width}x{height} is below the {min_side}px minimum side; "
                          "lower limits.min_side to process it")
    # 2. Pixels: any failure here means the data is damaged or cut off.
    notes: list[str] = []
    try:
        sixteen_bit = opencv_reads_deeper(data, image)
        if sixteen_bit:
            pixels = decode_opencv_16bit(data)
        elif heif_is_deep(image):
            pixels = decode_heif_16bit(data)  # upright already, like pillow-heif's 8-bit pixels
        else:
            image.load()
            if image.format in ("JPEG", "MPO") and not _jpeg_complete(data):
                raise OSError("no end-of-image marker after the last scan")
            pixels = _pillow_pixels(image, name, notes)
    except (DecodeError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, EOFError …
        raise DecodeError(
            "truncated", f"{name}: image data is damaged or cut off ({error}); re-copy it from the source"
        ) from None
    # 3. Metadata (never fatal), then orientation.
    metadata, orientation = _read_metadata(image, loaded=not sixteen_bit)
    metadata.notes[:0] = notes
    space = _icc_space(metadata.icc_profile)
    if metadata.icc_profile and (image.mode == "CMYK" or space != (b"RGB " if pixels.ndim == 3 else b"GRAY")):
        # A CMYK profile on converted pixels (or a broken one) would make viewers mis-render them.
        what = space.decode("latin-1").strip() if space else "unreadable"
        metadata.notes.append(f"{what} ICC profile dropped: it does not describe the decoded pixels")
        metadata.icc_profile = None
    if orientation != 1:
        metadata.notes.append(f"EXIF orientation {orientation} applied")
    # OpenCV's TIFF decoder applies the Orientation tag itself, even with IMREAD_UNCHANGED;
    # its PNG decoder does not (both pinned by tests). The shape check guards against a change.
    transposed = orientation >= 5 and width != height and pixels.shape[:2] == (width, height)
    if sixteen_bit and (image.format == "TIFF" or transposed):
        return DecodedImage(pixels, metadata)
    return DecodedImage(_orient(pixels, orientation), metadata)
