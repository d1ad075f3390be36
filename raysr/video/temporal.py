"""Temporal consistency: blend each upscaled frame with the previous output, warped by optical flow.

Super-resolution models upscale frames one at a time, so detail they invent
(texture, grain, edges) changes from frame to frame and the video flickers.
:class:`TemporalBlender` estimates motion between consecutive *input* frames
(small, cheap), carries it to the output size, warps the previous *output* frame
onto the current one and blends the two where the warp can be trusted::

    out_t = cur_t · (1 − w) + (warp(out_{t−1}) + up(Δin_t)) · w,    w = strength · confidence

``Δin_t`` is the input's own change along the flow (current input minus the warped
previous input), upsampled: fades and lighting changes are carried over instead of
lagging behind, and only what the model adds on top is stabilised. It is recursive (``out_{t−1}`` is the previous blended frame), so a static
region averages over roughly ``(1 + strength) / (1 − strength)`` frames.

Flow: OpenCV's DIS (Kroeger et al., ECCV 2016; ``cv2.DISOpticalFlow``, FAST
preset) on 8-bit gray input frames. DIS was chosen over Farneback because it is
3–6× faster at the sizes that matter (on 2 CPU cores: ~7 ms vs ~48 ms per flow at
480×270, ~15 ms vs ~160 ms at 960×540) and is built for large displacements;
its sub-pixel error (~0.03 px on a smooth translation) is small against the
output's pixel pitch. Two flows per frame (backward and forward, for the
consistency check) plus the output-size warp and blend are the whole cost:
measured on 2 shared CPU cores, ~6 ms per frame at 64×48 → 128×96, ~85 ms at
480×270 → 960×540, ~200 ms at 480×270 → 1920×1080 (the output-size float
warp and blend dominate; uint16 ~10% more).

Confidence (per pixel, in [0, 1]) is the product of:

* **in frame**: the warp's source lies inside the previous frame (content that
  enters at a border gets 0);
* **forward–backward consistency** (Sundaram, Brox & Keutzer, ECCV 2010): going
  back with the backward flow then forward with the forward flow must return to
  the start; occluded and disoccluded pixels fail it;
* **photometric agreement** of the warped previous input with the current input
  (cuts, lighting changes, objects the flow missed).

Agreement of the *outputs* is deliberately not part of it: the differences
between consecutive outputs are the flicker to be removed (including slow
brightness pumping), and real changes already show in the input.

Segments are independent: a blender lives for one segment and the first frame of
every segment comes out unchanged, so encoding segments in parallel gives the
same frames as encoding them one after another for the same segment plan (the
price: a possible small step in stabilisation at each segment boundary).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

TEMPORAL_NOTE_PREFIX = "temporal consistency"

_FB_RELATIVE = 0.01  # Sundaram et al.: |fb + ff|² < 0.01 (|fb|² + |ff|²) + 0.5 px²
_FB_ABSOLUTE = 0.5
_PHOTOMETRIC_TAU = 16.0  # gray levels (of 255) at which photometric confidence falls to e^-1


def temporal_note(strength: float) -> str:
    """The line a result's notes carry when blending was on."""
    return (f"{TEMPORAL_NOTE_PREFIX}: flow-warped previous output blended in (strength {strength:g}); "
            "the first frame of each segment is not blended")


def to_gray8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8|uint16 RGB → (H, W) uint8 luma (uint16 is scaled down by 257)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if gray.dtype == np.uint16:
        gray = (gray.astype(np.float32) * (1 / 257)).round().astype(np.uint8)
    return gray


def estimate_flow(flow: cv2.DISOpticalFlow, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense flow such that ``target[y, x] ≈ source[y + f[..., 1], x + f[..., 0]]``.

    Args:
        flow: a DIS instance (reused: it keeps its buffers).
        source, target: (H, W) uint8 gray frames.

    Returns:
        (H, W, 2) float32, in pixels of the input frames.
    """
    return flow.calc(target, source, None)


@lru_cache(maxsize=4)
def _grid(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float32 pixel coordinates (x, y), read-only (shared between calls)."""
    grid = np.dstack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at ``(x, y) + flow`` (bilinear, edges replicated).

    Args:
        image: (H, W, C) or (H, W), uint8|uint16|float32.
        flow: (H, W, 2) float32 at ``image``'s size, in pixels.

    Returns:
        ``image``'s shape and dtype.
    """
    coords = cv2.add(_grid(*flow.shape[:2]), flow)
    return cv2.remap(image, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_confidence(backward: np.ndarray, forward: np.ndarray, error: np.ndarray) -> np.ndarray:
    """How far warping the previous frame by ``backward`` can be trusted to give the current one.

    Args:
        backward: flow from the previous to the current frame as :func:`estimate_flow` gives
            it (``current ≈ warp(previous, backward)``); (H, W, 2) float32.
        forward: the opposite direction (``previous ≈ warp(current, forward)``).
        error: (H, W) float32 ≥ 0, |current − warp(previous, backward)| in 8-bit levels
            (largest over the colour channels).

    Returns:
        (H, W) float32 in [0, 1]: 0 where the source is outside the frame, occluded,
        or photometrically different; near 1 where the motion is consistent.
    """
    height, width = error.shape
    source = cv2.add(_grid(height, width), backward)
    # 1. in frame: the source pixel exists in the previous frame
    src_x, src_y = source[..., 0], source[..., 1]
    inside = (src_x >= -0.5) & (src_x <= width - 0.5) & (src_y >= -0.5) & (src_y <= height - 0.5)
    # 2. forward-backward: the forward flow at the source leads back to the start
    forward_at_source = cv2.remap(forward, source, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    loop = np.square(backward + forward_at_source).sum(axis=2)
    bound = _FB_RELATIVE * (np.square(backward).sum(axis=2) + np.square(forward_at_source).sum(axis=2)) + _FB_ABSOLUTE
    consistent = np.exp(-loop / bound)
    # 3. photometric: the warped previous input looks like the current input
    similar = np.exp(-np.square(cv2.blur(error, (3, 3)) / _PHOTOMETRIC_TAU))
    confidence = np.where(inside, consistent * similar, 0).astype(np.float32)
    # 4. conservative near failures: a pixel is only as sure as its least sure neighbour, then smoothed
    return cv2.GaussianBlur(cv2.erode(confidence, np.ones((3, 3), np.uint8)), (3, 3), 0)


def _blend(current: np.ndarray, warped: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``current · (1 − weight) + warped · weight``, rounded and clipped to ``current``'s dtype.

    ``current``: (H, W, 3) uint8|uint16; ``warped``: (H, W, 3) float32 (may leave the range);
    ``weight``: (H, W) float32 in [0, 1].
    """
    base = current.astype(np.float32)
    mixed = warped - base  # in place from here: these are the largest arrays of the pass
    mixed *= weight[..., None]
    mixed += base
    top = np.iinfo(current.dtype).max
    return np.clip(np.rint(mixed, out=mixed), 0, top, out=mixed).astype(current.dtype)


class TemporalBlender:
    """Blend each output frame with the flow-warped previous output; one instance per segment.

    Args:
        strength: in [0, 1]; the blend weight where the flow is fully trusted
            (0 returns every frame unchanged; 0.5 roughly halves static flicker).
        scale: output size / input size; ``None`` = read it from the frames' shapes
            (any ratio, per axis). When given, frames of another ratio are refused.

    Calling it with frame after frame of one segment returns the frames to encode;
    the first call (and any call after :meth:`reset` or a change of frame size)
    returns its output unchanged. ``last_confidence`` holds the previous call's
    (H·s, W·s) float32 confidence in [0, 1] (``None`` on a first frame).

    Example:
        >>> import numpy as np
        >>> blender = TemporalBlender(0.5, scale=2)
        >>> low = np.full((16, 16, 3), 100, np.uint8)
        >>> first = blender(low, np.full((32, 32, 3), 100, np.uint8))
        >>> int(blender(low, np.full((32, 32, 3), 120, np.uint8))[16, 16, 0])
        110
    """

    def __init__(self, strength: float, scale: int | None = None) -> None:
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be in [0, 1] (0 = off), got {strength!r}")
        if scale is not None and scale < 1:
            raise ValueError(f"scale must be a positive integer or None (from the frames), got {scale!r}")
        self.strength = float(strength)
        self.scale = scale
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOpticalFlow_PRESET_FAST)
        self.last_confidence: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next call returns its output unchanged)."""
        self._previous_gray: np.ndarray | None = None
        self._previous_input: np.ndarray | None = None
        self._previous_output: np.ndarray | None = None
        self.last_confidence = None

    def __call__(self, input_rgb: np.ndarray, output_rgb: np.ndarray) -> np.ndarray:
        """Blend one frame.

        Args:
            input_rgb: (H, W, 3) uint8|uint16 RGB, the frame the model saw.
            output_rgb: (H·s, W·s, 3) RGB of the same dtype, the model's output.

        Returns:
            (H·s, W·s, 3), ``output_rgb``'s dtype: the frame to encode (``output_rgb``
            itself on a segment's first frame or when ``strength`` is 0).

        Raises:
            ValueError: arrays that are not (H, W, 3) uint8|uint16 of one dtype, or a
                size ratio other than ``scale``.
        """
        self._check(input_rgb, output_rgb)
        if self.strength == 0:
            return output_rgb
        gray = to_gray8(input_rgb)
        previous, previous_input, previous_output = self._previous_gray, self._previous_input, self._previous_output
        self._previous_gray, self._previous_input = gray, input_rgb.copy()  # the caller may reuse its buffers
        if previous is None or previous.shape != gray.shape or previous_output.shape != output_rgb.shape:
            self._previous_output, self.last_confidence = output_rgb.copy(), None
            return output_rgb
        # 1. motion between the input frames, both ways; what changed along it; how far to trust it
        backward = estimate_flow(self._flow, previous, gray)
        forward = estimate_flow(self._flow, gray, previous)
        change = input_rgb.astype(np.float32) - warp(previous_input, backward).astype(np.float32)
        error = np.abs(change).max(axis=2) * (255 / np.iinfo(input_rgb.dtype).max)
        confidence = flow_confidence(backward, forward, error)
        # 2. carried to the output size (resize keeps pixel centres aligned; vectors scale with the axes)
        out_h, out_w = output_rgb.shape[:2]
        flow = cv2.resize(backward, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= out_w / gray.shape[1]
        flow[..., 1] *= out_h / gray.shape[0]
        confidence = cv2.resize(confidence, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        # 3. warp the previous output, add the input's own change (fades, lighting: no lag), blend
        warped = warp(previous_output, flow).astype(np.float32)
        warped += cv2.resize(change, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        result = _blend(output_rgb, warped, confidence * self.strength)
        self._previous_output, self.last_confidence = result, confidence
        return result

    def _check(self, input_rgb: object, output_rgb: object) -> None:
        for name, array in (("input_rgb", input_rgb), ("output_rgb", output_rgb)):
            if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != 3 \
                    or array.dtype not in (np.uint8, np.uint16):
                got = f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
                raise ValueError(f"{name} must be an (H, W, 3) uint8 or uint16 RGB array, got {got}")
        if input_rgb.dtype != output_rgb.dtype:
            raise ValueError(f"input_rgb is {input_rgb.dtype} but output_rgb is {output_rgb.dtype}; "
                             "they must share one dtype")
        if self.scale is not None:
            expected = (input_rgb.shape[0] * self.scale, input_rgb.shape[1] * self.scale)
            if output_rgb.shape[:2] != expected:
                raise ValueError(f"output_rgb is {output_rgb.shape[1]}x{output_rgb.shape[0]}, expected "
                                 f"{expected[1]}x{expected[0]} (input x scale {self.scale}); pass scale=None "
                                 "to take the ratio from the frames")
