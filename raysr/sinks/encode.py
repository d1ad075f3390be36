"""Encode output pixels, carrying the input's metadata and a raysr tag.

* PNG (default, lossless) is written by OpenCV, which handles 8/16-bit gray,
  RGB and RGBA; the metadata chunks (iCCP, pHYs, eXIf, iTXt XMP, tEXt/iTXt
  tag) are inserted after IHDR here, where the PNG spec allows all of them.
* TIFF is written here too (deflate + horizontal predictor, one IFD built with
  Pillow's ``ImageFileDirectory_v2``), because Pillow cannot hold 16-bit colour
  and OpenCV writes no metadata; archival 16-bit scans keep ICC, EXIF and XMP.
* JPEG and WebP go through Pillow, which writes ICC, EXIF, XMP and DPI itself.
  16-bit pixels are narrowed and alpha dropped (JPEG), and the result says so.

The EXIF carried over is updated: Software = the raysr tag, X/YResolution =
the scaled DPI, PixelX/YDimension = the output size. IPTC-IIM blocks of JPEG
inputs (APP13) are not carried; their fields usually also live in the XMP.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from raysr.sources.decode import RAYSR_TAG, TIFF_LAYOUT_TAGS, ImageMetadata, exif_text

FORMATS = ("png", "jpg", "webp", "tiff")
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
_MAX_SIDE = {"jpg": 65_535, "webp": 16_383}
_EXIF_SOFTWARE, _X_RES, _Y_RES, _RES_UNIT = 0x0131, 0x011A, 0x011B, 0x0128
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0x8825, 0xA005, 0xA002, 0xA003
_JPEG_SEGMENT_MAX = 65_533  # one APP1 segment holds EXIF or XMP


@dataclass(frozen=True)
class EncodedImage:
    """Encoded file bytes.

    Attributes:
        data: the file's bytes.
        kept: metadata written: any of ``icc``, ``exif``, ``xmp``, ``dpi``, ``tag``.
        notes: conversions and drops made on write (``16-bit narrowed …``).
    """

    data: bytes
    kept: tuple[str, ...]
    notes: tuple[str, ...]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _insert_png_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature + IHDR (length, type, 13 data bytes, crc)
    if png[12:16] != b"IHDR":
        raise ValueError("PNG encoder output does not start with IHDR")
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def _to_bgr(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels
    code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    return cv2.cvtColor(pixels, code)


def _output_exif(metadata: ImageMetadata, tag: str, dpi, size: tuple[int, int]) -> Image.Exif:
    """The input's EXIF with Software, resolution and pixel dimensions updated for the output."""
    exif = Image.Exif()
    if metadata.exif:
        exif.load(metadata.exif)
    for key in list(exif):
        if key not in (_EXIF_IFD, _GPS_IFD):
            exif[key] = exif_text(exif[key])
    exif[_EXIF_SOFTWARE] = exif_text(tag)
    if dpi:
        exif[_X_RES], exif[_Y_RES], exif[_RES_UNIT] = float(dpi[0]), float(dpi[1]), 2
    for key in (_EXIF_IFD, _GPS_IFD):
        if key in exif:
            sub_ifd = exif.get_ifd(key)  # cached: edits in place are written by tobytes()
            sub_ifd.update(exif_text(sub_ifd))
            if key == _EXIF_IFD and (_PIXEL_X in sub_ifd or _PIXEL_Y in sub_ifd):
                sub_ifd[_PIXEL_X], sub_ifd[_PIXEL_Y] = size
    return exif


def _exif_bytes(metadata: ImageMetadata, tag: str, dpi, size, notes: list[str]) -> tuple[bytes, bool]:
    """EXIF block and whether the input's EXIF made it in (a malformed one is replaced by a minimal one)."""
    try:
        return _output_exif(metadata, tag, dpi, size).tobytes(), bool(metadata.exif)
    except Exception as error:  # noqa: BLE001 - odd EXIF values fail in many ways
        notes.append(f"input EXIF could not be rewritten ({type(error).__name__}); dropped")
        return _output_exif(ImageMetadata(), tag, dpi, size).tobytes(), False


# zlib level 3, every row Paeth-filtered (libpng's adaptive choice among the five filters costs
# 13–17 % more time for files 0–0.5 % smaller). On model outputs of photos and drawings the
# Paeth residuals are small and smooth, and zlib's RLE strategy (runs only, no match search)
# writes them 2× faster into 5–15 % smaller files; on text and line art it loses (up to +80 %).
# So each image picks the strategy that packs a sample of its rows best (~10 % of one encode);
# an image of a few hundred rows is encoded both ways and the smaller kept.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]
_PNG_STRATEGIES = (cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_STRATEGY_DEFAULT)  # ties go to RLE (faster)
_PNG_SAMPLE_BANDS, _PNG_SAMPLE_ROWS = 4, 32


def _png_bytes(bgr: np.ndarray) -> tuple[bool, np.ndarray]:
    """``cv2.imencode`` with the zlib strategy that packs this image best: judged on a sample
    of its rows, or, for an image of a few hundred rows, on the whole of it (both kept, the
    smaller written)."""

    def encode(image: np.ndarray, strategy: int) -> tuple[bool, np.ndarray]:
        return cv2.imencode(".png", image, [*_PNG_PARAMS, cv2.IMWRITE_PNG_STRATEGY, strategy])

    height = bgr.shape[0]
    if height <= 2 * _PNG_SAMPLE_BANDS * _PNG_SAMPLE_ROWS:
        return min((encode(bgr, strategy) for strategy in _PNG_STRATEGIES), key=lambda result: len(result[1]))
    starts = np.linspace(0, height - _PNG_SAMPLE_ROWS, _PNG_SAMPLE_BANDS).astype(int)
    sample = np.concatenate([bgr[start:start + _PNG_SAMPLE_ROWS] for start in starts])
    return encode(bgr, min(_PNG_STRATEGIES, key=lambda strategy: len(encode(sample, strategy)[1])))


def _encode_png(pixels: np.ndarray, metadata: ImageMetadata, dpi, tag: str) -> EncodedImage:
    ok, buffer = _png_bytes(_to_bgr(pixels))
    if not ok:
        raise ValueError(f"PNG encoding failed for a {pixels.shape} {pixels.dtype} image")
    chunks, kept, notes = [], [], []
    if metadata.icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(metadata.icc_profile)))
        kept.append("icc")
    if dpi:
        per_metre = [max(1, int(round(value / 0.0254))) for value in dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
        kept.append("dpi")
    if metadata.exif:
        exif, carried = _exif_bytes(metadata, tag, dpi, pixels.shape[1::-1], notes)
        if carried:
            chunks.append(_png_chunk(b"eXIf", exif[6:]))  # eXIf holds the TIFF header onwards
            kept.append("exif")
    if metadata.xmp:
        # iTXt: keyword NUL, compression flag 0, method 0, language "" NUL, translated keyword "" NUL.
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + metadata.xmp))
        kept.append("xmp")
    try:
        chunks.append(_png_chunk(b"tEXt", RAYSR_TAG.encode() + b"\x00" + tag.encode("latin-1")))
    except UnicodeEncodeError:
        chunks.append(_png_chunk(b"iTXt", RAYSR_TAG.encode() + b"\x00\x00\x00\x00\x00" + tag.encode()))
    kept.append("tag")
    return EncodedImage(_insert_png_chunks(buffer.tobytes(), chunks), tuple(kept), tuple(notes))


def _encode_tiff(pixels: np.ndarray, metadata: ImageMetadata, dpi, tag: str) -> EncodedImage:
    """Baseline little-endian TIFF: deflate, predictor 2, ~1 MiB strips, all metadata in IFD0."""
    notes: list[str] = []
    height, width = pixels.shape[:2]
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    kept = ["tag"]
    ifd = TiffImagePlugin.ImageFileDirectory_v2()  # "II" (little-endian) header
    exif, carried = _exif_bytes(metadata, tag, dpi, (width, height), notes)
    source = Image.Exif()
    source.load(exif)
    for key, value in source.items():  # EXIF IFD0 tags are TIFF IFD0 tags; sub-IFDs as dicts
        if key in TIFF_LAYOUT_TAGS:
            continue
        if key in (_EXIF_IFD, _GPS_IFD):
            value = dict(source.get_ifd(key))
            if _INTEROP_IFD in value:
                value[_INTEROP_IFD] = source.get_ifd(_INTEROP_IFD)
        try:
            ifd[key] = exif_text(value)
        except Exception:  # noqa: BLE001 - a value Pillow cannot type is left out, not fatal
            notes.append(f"EXIF tag {key} dropped")
    if carried:
        kept.append("exif")
    if metadata.icc_profile:
        ifd[34675] = metadata.icc_profile
        kept.append("icc")
    if metadata.xmp:
        ifd[700] = metadata.xmp
        kept.append("xmp")
    if dpi:
        kept.append("dpi")
    # Horizontal differencing (predictor 2) wraps modulo 2^bits, as the spec defines.
    samples_le = pixels.astype("<u2" if pixels.dtype == np.uint16 else np.uint8)
    diff = samples_le.copy()
    diff[:, 1:] -= samples_le[:, :-1]
    row_bytes = diff[0].nbytes
    rows_per_strip = max(1, min(height, (1 << 20) // row_bytes))
    tops = range(0, height, rows_per_strip)
    strips = [zlib.compress(diff[top : top + rows_per_strip].tobytes(), 6) for top in tops]
    offsets = np.cumsum([0] + [len(strip) for strip in strips[:-1]]).tolist()
    ifd[256], ifd[257] = width, height
    ifd[258] = (pixels.itemsize * 8,) * samples
    ifd[259], ifd[262], ifd[317] = 8, 1 if samples == 1 else 2, 2  # deflate; gray or RGB; predictor
    ifd[277], ifd[278], ifd[284] = samples, rows_per_strip, 1  # chunky samples
    if samples == 4:
        ifd[338] = 2  # unassociated alpha
    ifd[273], ifd[279] = tuple(offsets), tuple(len(strip) for strip in strips)  # offsets from the IFD's end
    body = ifd.tobytes(8)  # Pillow shifts StripOffsets past the IFD and its data
    if 8 + len(body) + sum(len(strip) for strip in strips) >= 1 << 32:
        raise ValueError(f"a {width}x{height} TIFF would exceed 4 GiB (BigTIFF is not written); use png")
    data = b"II*\x00" + struct.pack("<I", 8) + body + b"".join(strips)
    return EncodedImage(data, tuple(kept), tuple(notes))


def _encode_pillow(
    pixels: np.ndarray, fmt: str, quality: int, metadata: ImageMetadata, dpi, tag: str
) -> EncodedImage:
    notes: list[str] = []
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        notes.append(f"16-bit narrowed to 8-bit ({fmt} has no 16-bit mode)")
    if fmt == "jpg" and pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
        notes.append("alpha dropped (JPEG has no alpha)")
    image = Image.fromarray(np.ascontiguousarray(pixels))
    exif, carried = _exif_bytes(metadata, tag, dpi, image.size, notes)
    if fmt == "jpg" and len(exif) > _JPEG_SEGMENT_MAX:
        notes.append(f"input EXIF ({len(exif)} bytes) exceeds one JPEG segment; dropped")
        exif, carried = _output_exif(ImageMetadata(), tag, dpi, image.size).tobytes(), False
    options: dict = {"exif": exif}
    kept = ["exif", "tag"] if carried else ["tag"]
    if metadata.icc_profile:
        options["icc_profile"] = metadata.icc_profile
        kept.append("icc")
    if dpi:
        options["dpi"] = dpi  # JFIF density for JPEG; the EXIF resolution carries it for WebP
        kept.append("dpi")
    if metadata.xmp:
        if fmt == "jpg" and len(metadata.xmp) > _JPEG_SEGMENT_MAX - 29:
            notes.append(f"XMP ({len(metadata.xmp)} bytes) exceeds one JPEG segment; dropped")
        else:
            options["xmp"] = metadata.xmp
            kept.append("xmp")
    if fmt == "jpg":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    else:
        options.update(quality=quality, lossless=quality == 100)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if fmt == "jpg" else "WEBP", **options)
    return EncodedImage(buffer.getvalue(), tuple(kept), tuple(notes))


def encode_image(
    pixels: np.ndarray,
    fmt: str = "png",
    quality: int = 95,
    metadata: ImageMetadata | None = None,
    scale: float = 1.0,
    tag: str = RAYSR_TAG,
) -> EncodedImage:
    """Encode (H, W[, 1|3|4]) uint8/uint16 gray/RGB(A) pixels.

    Args:
        pixels: (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA; uint8 or uint16.
        fmt: one of :data:`FORMATS`; png and tiff keep 16 bits, jpg and webp narrow to 8.
        quality: for jpg/webp, 1–100; high by default because restored archives
            should not lose what the model added. WebP at 100 is lossless.
        metadata: what to carry over from the input (ICC, EXIF, XMP, DPI).
        scale: output size / input size, > 0; DPI is multiplied by it so the
            print size stays the same.
        tag: text of the raysr marker (PNG text chunk ``raysr`` / EXIF Software);
            start it with ``raysr`` so :func:`decode_image` recognises it in EXIF.

    Raises:
        ValueError: bad format, dtype, shape, quality, scale, or a size the format cannot hold.

    Example:
        >>> out = encode_image(np.zeros((32, 32, 3), np.uint8), "png", tag="raysr test")
        >>> out.data[:4], out.kept
        (b'\\x89PNG', ('tag',))
    """
    if fmt not in FORMATS:
        raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(pixels, np.ndarray) or pixels.dtype not in (np.uint8, np.uint16):
        got = getattr(pixels, "dtype", type(pixels))
        raise ValueError(f"pixels must be a uint8 or uint16 numpy array, got {got}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))) or 0 in pixels.shape:
        raise ValueError(f"pixels must be non-empty (H, W), (H, W, 3) or (H, W, 4), got shape {pixels.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1–100, got {quality}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    limit = _MAX_SIDE.get(fmt)
    if limit and max(pixels.shape[:2]) > limit:
        raise ValueError(
            f"a {pixels.shape[1]}x{pixels.shape[0]} image exceeds {fmt}'s {limit}px side limit; use png or tiff"
        )
    metadata = metadata or ImageMetadata()
    icc_notes: tuple[str, ...] = ()
    icc = metadata.icc_profile
    if icc and bytes(icc[16:20]) != (b"RGB " if pixels.ndim == 3 else b"GRAY"):
        # e.g. a gray scan's profile on the RGB output of a 3-channel model: viewers would mis-render it
        space = bytes(icc[16:20]).decode("latin-1").strip() or "unreadable"
        kind = "RGB" if pixels.ndim == 3 else "gray"
        icc_notes = (f"{space} ICC profile dropped: it does not describe {kind} pixels",)
        metadata = replace(metadata, icc_profile=None)
    dpi = (metadata.dpi[0] * scale, metadata.dpi[1] * scale) if metadata.dpi else None
    if fmt == "png":
        encoded = _encode_png(pixels, metadata, dpi, tag)
    elif fmt == "tiff":
        encoded = _encode_tiff(pixels, metadata, dpi, tag)
    else:
        encoded = _encode_pillow(pixels, fmt, quality, metadata, dpi, tag)
    return replace(encoded, notes=icc_notes + encoded.notes) if icc_notes else encoded
