"""Decode and validate image bytes into gray/RGB(A) numpy pixels plus the metadata to keep.

Pillow reads headers, metadata and most pixel formats, and refuses truncated
files; OpenCV decodes 16-bit colour PNG/TIFF, which Pillow narrows to 8 bits.
OpenCV is never used for JPEG: it fills a cut-off JPEG with grey and says
nothing. Every refusal is a :class:`DecodeError` with a ``kind`` the manifest
records and a message that names the file and says what to do; no input,
however damaged, raises anything else (except ``MemoryError``).

Floating-point images (Pillow mode ``F``, float TIFFs) are refused as
``unsupported``: their range is not defined (0–1, 0–65535, HDR), so any
mapping to integers would silently change the data.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

MIN_SIDE_PX = 16
MAX_PIXELS = 40_000 * 40_000 // 4  # 400 MP: beyond this a header is treated as a decompression bomb
RAYSR_TAG = "raysr"
_EXIF_ORIENTATION = 0x0112
_EXIF_SOFTWARE = 0x0131
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SRGB = ImageCms.createProfile("sRGB")

# TIFF tags that describe one file's pixel layout (sizes, strips, compression),
# or that raysr carries separately (ICC 34675, XMP 700), or that describe
# layers/thumbnails that are stale after upscaling (Photoshop 34377, 37724).
# TIFF inputs expose their whole IFD0 as EXIF; these are dropped from it.
TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284,
    290, 291, 292, 293, 317, 320, 322, 323, 324, 325, 330, 332, 338, 339, 340, 341, 347,
    513, 514, 529, 530, 531, 532, 700, 34377, 34675, 37724,
})

# Pillow's own bomb check would refuse images between its 179 MP and our limit
# before we could read their size; decode_image applies ``max_pixels`` itself,
# before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
)
_NOT_IMAGE_HINTS = (
    ((b"<!doctype html", b"<html", b"<head"), "it is an HTML page (e.g. a saved download error page); download it again"),
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


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to (H, W[, C]) pixels, as Pillow's ``exif_transpose`` does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    transform = transforms.get(orientation)
    return np.ascontiguousarray(transform(pixels)) if transform else pixels


def _not_an_image(data: bytes, name: str) -> DecodeError:
    """Classify bytes Pillow cannot identify: damaged known format, unsupported layout, or not an image."""
    kind = next((fmt for magic, fmt in _SIGNATURES if data.startswith(magic)), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WebP"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1"):
        return DecodeError("unsupported", f"{name}: HEIC/HEIF images are not supported; convert it to JPEG or PNG")
    if kind:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is not None:  # intact, but a layout Pillow does not read (e.g. float RGB TIFF)
            return DecodeError(
                "unsupported",
                f"{name}: {kind} with {pixels.dtype} samples is not supported; export it as 8/16-bit integer PNG or TIFF",
            )
        return DecodeError("truncated", f"{name}: starts like a {kind} but its header is damaged or cut off; re-copy it from the source")
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    hint = next((text for prefixes, text in _NOT_IMAGE_HINTS if head.startswith(prefixes)), None)
    if hint is None and b"\x00" not in data[:512]:
        try:
            data[:512].decode("utf-8")
            hint = "it is a text file"
        except UnicodeDecodeError:
            pass
    detail = f" ({hint})" if hint else "; check that it is an image and re-export it as PNG, JPEG or TIFF"
    return DecodeError("not_an_image", f"{name}: not a readable image format{detail}")


def _is_16bit_opencv(data: bytes, image: Image.Image) -> bool:
    """16-bit colour or gray+alpha: layouts Pillow would narrow to 8 bits."""
    if data.startswith(_PNG_SIGNATURE) and len(data) > 25:
        bit_depth, color_type = data[24], data[25]
        return bit_depth == 16 and color_type in (2, 4, 6)  # RGB, gray+alpha, RGBA
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA", "RGBX", "LA"):
        bits = image.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _decode_opencv_16bit(data: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise OSError("OpenCV could not decode the 16-bit pixel data")
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


def _jpeg_complete(data: bytes) -> bool:
    """An end-of-image marker follows the last scan (it cannot occur inside entropy-coded data).

    Pillow refuses cut-off JPEGs only while ``ImageFile.LOAD_TRUNCATED_IMAGES``
    is False, a process-wide switch other libraries set; this check does not
    depend on it.
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
            raise DecodeError("unsupported", f"{name}: 32-bit integer pixels outside 0–65535; convert it to 16-bit")
        notes.append("I→16-bit gray")
        return array.astype(np.uint16)
    if mode == "1":
        notes.append("1-bit→gray")
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA", "LA", "La", "RGBa", "RGBX", "L", "RGB"):
        has_alpha = mode in ("PA", "LA", "La", "RGBa") or transparent
        target = "RGBA" if has_alpha else "RGB"
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
    raise DecodeError(
        "unsupported", f"{name}: {what} pixels are not supported; export it as 8/16-bit integer PNG or TIFF"
    )


def _icc_space(icc: bytes | None) -> bytes | None:
    """The colour space an ICC profile applies to (``RGB ``, ``GRAY``, ``CMYK`` …), from its header."""
    return bytes(icc[16:20]) if icc and len(icc) >= 128 else None


def _exif_of(image: Image.Image, loaded: bool) -> Image.Exif:
    if image.format == "PNG" and not loaded:  # PngImageFile.getexif() would decode the pixels again
        exif = Image.Exif()
        if image.info.get("exif"):
            exif.load(image.info["exif"])
        return exif
    return image.getexif()


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
        clean[tag] = value
    if _EXIF_ORIENTATION in clean:
        clean[_EXIF_ORIENTATION] = 1
    return clean


def _orientation(exif: Image.Exif) -> int:
    try:
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except (TypeError, ValueError):
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _read_metadata(image: Image.Image, loaded: bool) -> tuple[ImageMetadata, int]:
    """Metadata and EXIF orientation; a damaged block is dropped with a note, never fatal."""
    metadata, orientation = ImageMetadata(format=image.format or ""), 1
    info = image.info
    icc = info.get("icc_profile")
    metadata.icc_profile = bytes(icc) if icc else None
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    metadata.xmp = (xmp.encode() if isinstance(xmp, str) else bytes(xmp)) if xmp else None
    dpi = info.get("dpi")
    if image.format == "TIFF" and 282 not in image.tag_v2:
        dpi = None  # Pillow reports (1, 1) for TIFFs without a resolution tag
    try:
        if dpi and float(dpi[0]) > 1 and float(dpi[1]) > 1:
            metadata.dpi = (float(dpi[0]), float(dpi[1]))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        metadata.notes.append("unreadable DPI dropped")
    tag = info.get(RAYSR_TAG)
    try:
        exif = _exif_of(image, loaded)
        orientation = _orientation(exif)
        software = exif.get(_EXIF_SOFTWARE)
        if not tag and isinstance(software, str) and software.startswith(RAYSR_TAG):
            tag = software
        clean = _clean_exif(exif)
        metadata.exif = clean.tobytes() if len(clean) else None
    except Exception as error:  # noqa: BLE001 - malformed EXIF comes in endless shapes
        metadata.notes.append(f"unreadable EXIF dropped ({type(error).__name__})")
    metadata.raysr_tag = str(tag) if tag else None
    try:
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            metadata.notes.append(f"first of {frames} frames")
    except Exception:  # noqa: BLE001 - a damaged later frame does not spoil the first
        metadata.notes.append("later frames unreadable; first frame used")
    return metadata, orientation


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
        raise DecodeError(
            "truncated", f"{name}: image header is damaged ({error}); re-copy it from the source"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(
            "too_large",
            f"{name}: header claims {width}x{height} = {width * height / 1e6:.0f} MP, over the "
            f"{max_pixels / 1e6:.0f} MP limit (possible decompression bomb); raise limits.max_pixels if genuine",
        )
    if min(width, height) < min_side:
        raise DecodeError(
            "too_small",
            f"{name}: {width}x{height} is below the {min_side}px minimum side; lower limits.min_side to process it",
        )
    # 2. Pixels: a failure here means the data is damaged or cut off.
    sixteen_bit = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sixteen_bit = _is_16bit_opencv(data, image)
            if sixteen_bit:
                pixels = _decode_opencv_16bit(data)
            else:
                image.load()
                if image.format in ("JPEG", "MPO") and not _jpeg_complete(data):
                    raise OSError("no end-of-image marker after the last scan")
                notes: list[str] = []
                pixels = _pillow_pixels(image, name, notes)
    except (DecodeError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, EOFError …
        raise DecodeError(
            "truncated", f"{name}: image data is damaged or cut off ({error}); re-copy it from the source"
        ) from None
    # 3. Metadata, then orientation.
    metadata, orientation = _read_metadata(image, loaded=not sixteen_bit)
    if not sixteen_bit:
        metadata.notes[:0] = notes
    space = _icc_space(metadata.icc_profile)
    if metadata.icc_profile and space != (b"GRAY" if pixels.ndim == 2 else b"RGB "):
        # A CMYK profile on converted pixels (or a broken one) would make viewers mis-render.
        metadata.notes.append(f"ICC profile for {space!r} dropped: it does not describe the decoded pixels")
        metadata.icc_profile = None
    if orientation != 1:
        metadata.notes.append(f"EXIF orientation {orientation} applied")
    return DecodedImage(_orient(pixels, orientation), metadata)
