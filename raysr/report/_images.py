"""Thumbnails and 1:1 before/after crops as ``data:`` URIs, read through raysr's storage.

Images are decoded with the job's own decoder (EXIF orientation, 16-bit, gray,
alpha), so the report shows what the job saw; a video is compared on one frame,
its middle one in the input and the frame shown at the same time in the output
(raysr keeps every timestamp). Any failure to read or decode becomes a
:class:`Picture` with a note, never an exception: one missing output must not
cost the whole report.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from raysr import storage
from raysr.sources.decode import decode_image

_THUMB_JPEG_QUALITY = 85


@dataclass(frozen=True)
class Picture:
    """One embedded image: a ``data:`` URI, or ``None`` with the reason in ``note``."""

    uri: str | None
    width: int = 0
    height: int = 0
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """Thumbnails of input and output, and the same output region from both at 1:1."""

    input_thumb: Picture
    output_thumb: Picture
    # None when input or output is unreadable (the thumbnail's note says why)
    before_crop: Picture | None  # the input resized (bicubic) to the output's size, then cropped
    after_crop: Picture | None
    crop_box: tuple[int, int, int, int] | None  # x, y, width, height in output pixels


def read_rgb8(uri: str) -> np.ndarray:
    """Decode the image at ``uri`` (local or ``s3://``) to (H, W, 3) uint8 RGB.

    16-bit is scaled to 8-bit and alpha dropped: the report compares detail, and a
    browser shows 8-bit anyway.
    """
    return _rgb8(decode_image(storage.read_bytes(uri), uri).pixels)


def _rgb8(pixels: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4), uint8 or uint16 → (H, W, 3) uint8."""
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def data_uri(rgb: np.ndarray, fmt: str) -> str:
    """(H, W, 3) uint8 RGB → ``data:image/{jpeg,png};base64,…``."""
    params = [cv2.IMWRITE_JPEG_QUALITY, _THUMB_JPEG_QUALITY] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {fmt}")
    return f"data:image/{fmt};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


def thumbnail(rgb: np.ndarray, max_px: int) -> Picture:
    """A JPEG no larger than ``max_px`` on its long side (area filter: no aliasing)."""
    height, width = rgb.shape[:2]
    factor = min(1.0, max_px / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if factor < 1 else rgb
    return Picture(data_uri(small, "jpeg"), size[0], size[1])


def detailed_box(rgb: np.ndarray, box_px: int) -> tuple[int, int]:
    """Top-left (x, y) of the ``box_px`` window with the most gradient energy.

    Scores windows on a half-window stride with an integral image: one pass over
    the image, however many windows. Falls back to the centre for flat images.
    """
    height, width = rgb.shape[:2]
    box_w, box_h = min(box_px, width), min(box_px, height)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    total = cv2.integral(energy)
    stride = max(1, min(box_w, box_h) // 2)
    ys = np.arange(0, height - box_h + 1, stride)
    xs = np.arange(0, width - box_w + 1, stride)
    scores = (total[ys[:, None] + box_h, xs[None, :] + box_w] - total[ys[:, None], xs[None, :] + box_w]
              - total[ys[:, None] + box_h, xs[None, :]] + total[ys[:, None], xs[None, :]])
    if scores.max() <= 0:
        return (width - box_w) // 2, (height - box_h) // 2
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(xs[col]), int(ys[row])


def resized_region(rgb: np.ndarray, scale_x: float, scale_y: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``box`` (x, y, w, h, output pixels) of ``rgb`` resized bicubically by the scales.

    Equal to cutting ``box`` out of ``cv2.resize(rgb, …, INTER_CUBIC)`` (same pixel
    centres), but costs only the crop, not a full-size copy of the output.
    """
    x, y, w, h = box
    matrix = np.float32([[scale_x, 0, 0.5 * scale_x - 0.5 - x], [0, scale_y, 0.5 * scale_y - 0.5 - y]])
    return cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _unreadable(uri: str | None, error: BaseException | None = None) -> Picture:
    if not uri:
        return Picture(None, note="no URI recorded")
    reason = f"{type(error).__name__}: {error}" if error else "unreadable"
    return Picture(None, note=f"could not read {uri}: {reason}"[:300])


def _load(uri: str | None) -> tuple[np.ndarray | None, Picture | None]:
    """Pixels, or the placeholder explaining why there are none."""
    if not uri:
        return None, _unreadable(uri)
    try:
        return read_rgb8(uri), None
    except Exception as error:  # noqa: BLE001 - missing, denied, damaged: all become a note
        return None, _unreadable(uri, error)


def compare(input_uri: str | None, output_uri: str | None, thumb_px: int, crop_px: int) -> Comparison:
    """Thumbnails and 1:1 crops of one image; placeholders for whatever cannot be read."""
    before, before_missing = _load(input_uri)
    after, after_missing = _load(output_uri)
    return _compare(before, before_missing, after, after_missing, thumb_px, crop_px)


@contextmanager
def _video_source(uri: str):
    """A path for a local video; for ``s3://``, a seekable file that reads byte ranges (the
    decoder reads a frame's worth near the middle, not the whole object)."""
    if not storage.is_s3(uri):
        yield uri
        return
    from raysr.sources.s3 import arrow_filesystem

    filesystem, path = arrow_filesystem(uri)
    with filesystem.open_input_file(path) as handle:
        yield handle


def _load_frame(uri: str | None, at_s: float | None) -> tuple[np.ndarray | None, float | None, Picture | None]:
    """A video's frame nearest ``at_s`` (None: its middle), upright as a player shows it, and its
    time; or the placeholder saying why not."""
    if not uri:
        return None, None, _unreadable(uri)
    try:
        from raysr.video.probe import frame_near  # PyAV: the `video` extra

        with _video_source(uri) as source:
            pixels, shown_s = frame_near(source, at_s, upright=True)
        return _rgb8(pixels), shown_s, None
    except Exception as error:  # noqa: BLE001 - missing, denied, damaged, no PyAV: all become a note
        return None, None, _unreadable(uri, error)


def compare_video(input_uri: str | None, output_uri: str | None, thumb_px: int,
                  crop_px: int) -> tuple[Comparison, float | None]:
    """Like :func:`compare`, on the input's middle frame and the output's frame shown at the same
    time; with that time in seconds (None when the input has no readable frame)."""
    before, shown_s, before_missing = _load_frame(input_uri, None)
    after, _, after_missing = _load_frame(output_uri, shown_s)
    return _compare(before, before_missing, after, after_missing, thumb_px, crop_px), shown_s


def _compare(before: np.ndarray | None, before_missing: Picture | None, after: np.ndarray | None,
             after_missing: Picture | None, thumb_px: int, crop_px: int) -> Comparison:
    input_thumb = before_missing or thumbnail(before, thumb_px)
    output_thumb = after_missing or thumbnail(after, thumb_px)
    if before is None or after is None:
        return Comparison(input_thumb, output_thumb, None, None, None)
    # 1. Choose the region on the input (smaller by the scale), then map it to output pixels.
    scale_x, scale_y = after.shape[1] / before.shape[1], after.shape[0] / before.shape[0]
    w, h = min(crop_px, after.shape[1]), min(crop_px, after.shape[0])
    in_x, in_y = detailed_box(before, max(1, round(crop_px / max(scale_x, scale_y))))
    x = min(max(0, round(in_x * scale_x)), after.shape[1] - w)
    y = min(max(0, round(in_y * scale_y)), after.shape[0] - h)
    box = (x, y, w, h)
    # 2. Crops stay PNG (lossless) so JPEG artefacts are not mistaken for the model's.
    before_crop = Picture(data_uri(resized_region(before, scale_x, scale_y, box), "png"), w, h)
    after_crop = Picture(data_uri(np.ascontiguousarray(after[y:y + h, x:x + w]), "png"), w, h)
    return Comparison(input_thumb, output_thumb, before_crop, after_crop, box)
