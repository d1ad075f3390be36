"""TemporalBlender: off is bit-exact, static flicker drops, motion is followed, occlusions are not blended."""

from __future__ import annotations

import hashlib

import av
import cv2
import numpy as np
import pytest

from clips import nearest2x, pattern
from raysr.video.options import EncodeOptions
from raysr.video.pipeline import TEMPORAL_NOTE, upscale_video
from raysr.video.probe import plan_segments
from raysr.video.segment import encode_segment
from raysr.video.temporal import TEMPORAL_NOTE_PREFIX, TemporalBlender, temporal_note

W, H = 64, 48


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth random texture in [28, 228] (something for the flow to lock on)."""
    coarse = np.random.default_rng(seed).random((height // 4 + 4, width // 4 + 4, 3)).astype(np.float32)
    return (cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 200 + 28).astype(np.uint8)


def flickering(clean: np.ndarray, rng: np.random.Generator, sigma: float = 8.0) -> np.ndarray:
    """``clean`` plus fresh Gaussian noise: a model's frame-to-frame instability, simulated."""
    top = np.iinfo(clean.dtype).max
    noise = rng.normal(0, sigma * (top / 255), clean.shape)
    return np.clip(clean + noise.round(), 0, top).astype(clean.dtype)


def consecutive_diff(frames: list[np.ndarray]) -> float:
    """Mean |frame_t − frame_t−1| over the sequence (from frame 2: frame 0 is never blended)."""
    return float(np.mean([np.abs(b.astype(np.float64) - a).mean() for a, b in zip(frames[1:], frames[2:])]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-10)))


def test_strength_zero_returns_every_frame_untouched():
    blender, rng = TemporalBlender(0.0), np.random.default_rng(0)
    for index in range(4):
        output = flickering(nearest2x(pattern(index, W, H)), rng)
        assert blender(pattern(index, W, H), output) is output


def test_first_frame_unchanged_and_reset():
    low, rng = texture(W, H), np.random.default_rng(1)
    blender = TemporalBlender(0.5, scale=2)
    first = flickering(nearest2x(low), rng)
    assert blender(low, first) is first and blender.last_confidence is None
    second = flickering(nearest2x(low), rng)
    assert not np.array_equal(blender(low, second), second)
    blender.reset()
    assert blender(low, second) is second


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_static_flicker_drops(dtype):
    """Static scene, fresh noise (σ 8/255) on every "upscaled" frame: consecutive outputs move far less."""
    low = texture(W, H).astype(dtype) * (257 if dtype == np.uint16 else 1)
    clean, rng = nearest2x(low), np.random.default_rng(2)
    blender = TemporalBlender(0.5, scale=2)
    raw = [flickering(clean, rng) for _ in range(10)]
    blended = [blender(low, frame) for frame in raw]
    assert all(frame.dtype == dtype and frame.shape == clean.shape for frame in blended)
    before, after = consecutive_diff(raw), consecutive_diff(blended)
    assert after < 0.5 * before  # measured: 9.0 → 3.7 (uint8 levels); recursive blend at w 0.5 gives ~0.41x
    assert blender.last_confidence.min() > 0.9
    errors = [np.abs(frame.astype(np.float64) - clean).mean() for frame in (raw[-1], blended[-1])]
    assert errors[1] < 0.7 * errors[0]  # closer to the clean frame too, not just steadier


def test_full_range_survives_uint16():
    low = np.full((H, W, 3), 65535, np.uint16)
    blender = TemporalBlender(1.0)
    for _ in range(3):
        out = blender(low, nearest2x(low))
    assert out.dtype == np.uint16 and out.min() == 65535


def test_translating_texture_is_followed_not_smeared():
    """Texture moving (−2, −1) px per input frame: the blend stays on the current frame; a no-flow blend does not."""
    big, blender = texture(W + 40, H + 30, seed=3), TemporalBlender(0.5, scale=2)
    previous = None
    for index in range(8):
        low = big[5 + index: 5 + index + H, 4 + 2 * index: 4 + 2 * index + W].copy()
        current = cv2.resize(low, (2 * W, 2 * H), interpolation=cv2.INTER_CUBIC)
        out = blender(low, current)
        if previous is not None:
            naive = np.rint(0.5 * current + 0.5 * previous).astype(np.uint8)
            assert psnr(out, current) > 40 and psnr(naive, current) < 25  # measured ~54 dB vs ~20.5 dB
        previous = current


def test_moving_pattern_clip_frames():
    """The test clips' own frames (moving bar and dot, blue rising 9 levels a frame): the blend follows them."""
    blender, noisy_blender, rng, previous = TemporalBlender(0.5, scale=2), TemporalBlender(0.5, scale=2), \
        np.random.default_rng(6), None
    for index in range(10):
        low = pattern(index, W, H)
        current = nearest2x(low)
        out = blender(low, current)
        noisy = flickering(current, rng)
        denoised = noisy_blender(low, noisy)
        if previous is not None:
            naive = np.rint(0.5 * current + 0.5 * previous).astype(np.uint8)
            assert psnr(out, current) > 40 and psnr(naive, current) < 26  # measured ≥ 64 dB vs 22–25 dB
        if index >= 2:
            assert psnr(denoised, current) > psnr(noisy, current) + 1  # measured +2.0 to +2.6 dB (30.1 → 32.8)
        previous = current


def test_occluded_and_entering_regions_get_low_confidence():
    background = texture(W, H, seed=4)
    square = np.zeros_like(background)
    square[..., 0] = 240  # flat red square, 12 px, moving 6 px right
    frames = []
    for left in (20, 26):
        frame = background.copy()
        frame[18:30, left:left + 12] = square[18:30, left:left + 12]
        frames.append(frame)
    blender = TemporalBlender(1.0, scale=2)
    blender(frames[0], nearest2x(frames[0]))
    blender(frames[1], nearest2x(frames[1]))
    confidence = blender.last_confidence[::2, ::2]  # back to input pixels
    assert confidence.shape == (H, W) and confidence.dtype == np.float32
    assert confidence[19:29, 21:25].mean() < 0.3  # uncovered: the square was there, the background now is
    assert confidence[:, 50:].mean() > 0.9 and confidence[40:, :].mean() > 0.9  # static background, far away

    big = texture(W + 20, H, seed=5)  # pan: new content enters at the left edge
    blender = TemporalBlender(1.0, scale=2)
    for shift in (8, 4):
        low = big[:, shift: shift + W].copy()
        blender(low, nearest2x(low))
    confidence = blender.last_confidence[::2, ::2]
    assert confidence[:, :3].max() < 0.1 and confidence[:, 12:-4].mean() > 0.8


@pytest.mark.parametrize(("strength", "scale", "input_shape", "output", "match"), [
    (-0.1, None, (H, W, 3), np.zeros((2 * H, 2 * W, 3), np.uint8), "strength must be in"),
    (1.5, None, (H, W, 3), np.zeros((2 * H, 2 * W, 3), np.uint8), "strength must be in"),
    (0.5, 2, (H, W, 3), np.zeros((3 * H, 3 * W, 3), np.uint8), "expected 128x96"),
    (0.5, None, (H, W, 3), np.zeros((2 * H, 2 * W, 3), np.uint16), "must share one dtype"),
    (0.5, None, (H, W, 3), np.zeros((2 * H, 2 * W, 3), np.float32), r"got \(96, 128, 3\) float32"),
    (0.5, None, (H, W), np.zeros((2 * H, 2 * W, 3), np.uint8), r"input_rgb .* got \(48, 64\) uint8"),
])
def test_bad_arguments_named(strength, scale, input_shape, output, match):
    with pytest.raises(ValueError, match=match):
        TemporalBlender(strength, scale)(np.zeros(input_shape, np.uint8), output)


def _noisy2x(rgb: np.ndarray) -> np.ndarray:
    """nearest2x plus noise seeded by the frame's bytes: deterministic, but flickers like a model."""
    seed = int.from_bytes(hashlib.sha256(rgb.tobytes()).digest()[:8], "little")
    return flickering(nearest2x(rgb), np.random.default_rng(seed))


def _mean_error(frames: list[np.ndarray], reference: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a.astype(np.float64) - b).mean() for a, b in zip(frames, reference)]))


def _decoded(source) -> list[np.ndarray]:
    with av.open(str(source)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_encode_segment_strength_zero_is_the_plain_path(clip):
    path = clip("a.mkv", codec="ffv1", audio=None, frames=12)
    segment = plan_segments(path, 10)[0]
    plain = encode_segment(path, segment, _noisy2x, EncodeOptions(codec="ffv1"))
    zero = encode_segment(path, segment, _noisy2x, EncodeOptions(codec="ffv1"), temporal_strength=0.0)
    assert plain.data == zero.data and plain.notes == zero.notes
    with pytest.raises(ValueError, match="strength must be in"):
        encode_segment(path, segment, _noisy2x, temporal_strength=1.5)


def test_upscale_video_blends_across_segment_cuts(clip, tmp_path):
    path = clip("in.mkv", codec="ffv1", audio=None)  # 48 frames, keyframe every 12: 4 segments at 0.4 s
    options = EncodeOptions(codec="ffv1")
    off = upscale_video(path, tmp_path / "off.mkv", _noisy2x, options, target_seconds=0.4)
    on = upscale_video(path, tmp_path / "on.mkv", _noisy2x, options, target_seconds=0.4, temporal_strength=0.5)
    parallel = upscale_video(path, tmp_path / "par.mkv", _noisy2x, options, target_seconds=0.4,
                             temporal_strength=0.5, workers=2)
    assert on.check.ok and on.segments == 4 and on.frames == off.frames == 48
    assert TEMPORAL_NOTE in off.notes and TEMPORAL_NOTE not in on.notes
    assert on.notes[0] == temporal_note(0.5) and on.notes[0].startswith(TEMPORAL_NOTE_PREFIX)
    plain, blended = _decoded(off.output), _decoded(on.output)
    same = [index for index, (a, b) in enumerate(zip(plain, blended)) if np.array_equal(a, b)]
    # the video's first frame, and 23 and 45, where the clip's blue channel wraps from 198 to 7:
    # a colour cut, so the previous frame is not trusted anywhere. Segments' first frames (12,
    # 24, 36) are blended too: each segment is primed with the frame before it.
    assert same == [0, 23, 45]
    assert all(np.array_equal(a, b) for a, b in zip(blended, _decoded(parallel.output)))
    clean = _decoded(upscale_video(path, tmp_path / "clean.mkv", nearest2x, options, target_seconds=0.4).output)
    assert _mean_error(blended, clean) < 0.95 * _mean_error(plain, clean)  # measured 4.57 → 3.91 levels
    with pytest.raises(ValueError, match="temporal_strength must be in"):
        upscale_video(path, tmp_path / "bad.mkv", _noisy2x, temporal_strength=-1)
