"""Pixels deeper than Pillow reads them: 16-bit colour PNG, TIFF and JPEG 2000 through
OpenCV, 10/12-bit HEIF through pillow-heif's own reader. Used by :mod:`raysr.sources.decode`,
which decides everything else (headers, metadata, orientation, refusals).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def opencv_reads_deeper(data: bytes, image: Image.Image) -> bool:
    """16-bit colour or gray+alpha: layouts Pillow would narrow to 8 bits."""
    if data.startswith(b"\x89PNG") and len(data) > 25:
        bit_depth, color_type = data[24], data[25]
        return bit_depth == 16 and color_type in (2, 4, 6)  # RGB, gray+alpha, RGBA
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA", "RGBX", "LA"):
        bits = image.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    if image.format == "JPEG2000" and image.mode in ("RGB", "RGBA"):
        return _jpeg2000_bits(data) > 8  # archival masters: Pillow reads 16-bit colour as 8
    return False


def _jpeg2000_bits(data: bytes) -> int:
    """Bits of the first component of a JP2 file (its ``ihdr`` box) or J2K codestream (SIZ); 8 if unknown."""
    head = data[:4096]
    box = head.find(b"ihdr")
    if box >= 0 and len(head) > box + 14 and head[box + 14] != 0xFF:  # 0xFF: depths differ (then Pillow's view)
        return (head[box + 14] & 0x7F) + 1
    siz = head.find(b"\xff\x51")
    if siz >= 0 and len(head) > siz + 40:
        return (head[siz + 40] & 0x7F) + 1  # Ssiz of component 0, after the marker and Lsiz … Csiz
    return 8


def decode_opencv_16bit(data: bytes) -> np.ndarray:
    """The 16-bit pixels of what :func:`opencv_reads_deeper` picked, as RGB(A) uint16."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise OSError("OpenCV could not decode the 16-bit pixel data")
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


def heif_is_deep(image: Image.Image) -> bool:
    """A HEIF of more than 8 bits, which pillow-heif's Pillow plugin would hand over as 8."""
    return image.format == "HEIF" and (image.info.get("bit_depth") or 8) > 8


def decode_heif_16bit(data: bytes) -> np.ndarray:
    """A 10/12-bit HEIF as uint16 (pillow-heif scales it to the full range); its Pillow plugin
    would hand over 8 bits."""
    from pillow_heif import open_heif

    pixels = np.asarray(open_heif(io.BytesIO(data), convert_hdr_to_8bit=False))
    if pixels.dtype != np.uint16:
        raise OSError(f"pillow-heif gave {pixels.dtype} pixels for a deep HEIF")
    return pixels
