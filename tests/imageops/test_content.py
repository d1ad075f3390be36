"""Tests for raysr.imageops.content.

The accuracy test builds a labelled set in memory, with no downloads:

- photo: crops and downscales of the natural images shipped with scikit-image
  (colour and gray), some JPEG-compressed or with sensor-like noise;
- anime: flat-colour drawings made with OpenCV primitives (filled polygons,
  circles and ellipses, dark outlines, 2-3 tone cel shading, optional gradient
  background, some gray line art), some JPEG-compressed at quality 85 and some
  rescaled.

The classifier's ramp ends were chosen on seeds ``TUNE_SEEDS`` and checked on
500-559; the accuracy test runs on ``HELD_OUT_SEEDS``, which played no part in
tuning (other crops, sizes, degradations and drawings). The photo *sources*
are the same 16 natural images in every range; only crops and degradations
differ, so this measures robustness to those, not to unseen scenes.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from skimage import data

from raysr.imageops.content import ContentGuess, classify_content, content_features

TUNE_SEEDS = range(0, 60)
HELD_OUT_SEEDS = range(1000, 1060)

# Natural images bundled with scikit-image 0.26 (no pooch download needed).
# Synthetic ones (colorwheel, logo, checkerboard, binary_blobs) and scanned
# text pages are left out: they are not photos.
_PHOTO_SOURCES = (
    "astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry",
    "hubble_deep_field", "retina", "moon", "coins", "clock", "grass", "gravel",
    "brick", "cell", "stereo_motorcycle",
)


def _source(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out[..., ::-1].copy() if out.ndim == 3 else out


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    method = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=method)


def make_photo(seed: int) -> np.ndarray:
    """A crop of a natural image, maybe downscaled, JPEG-compressed or noisy."""
    rng = np.random.default_rng(seed)
    image = _source(_PHOTO_SOURCES[seed % len(_PHOTO_SOURCES)])
    h, w = image.shape[:2]
    ch, cw = (int(rng.integers(min(h, 160), h + 1)), int(rng.integers(min(w, 160), w + 1)))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image = image[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        image = _rescale(image, rng.uniform(0.3, 0.9))
    if rng.random() < 0.3:
        noise = rng.normal(0.0, rng.uniform(2, 8), image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        image = _jpeg(image, int(rng.integers(30, 95)))
    return np.ascontiguousarray(image)


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` saturated-to-pastel base colours, uint8 RGB."""
    hsv = np.stack([rng.integers(0, 180, n), rng.integers(40, 256, n), rng.integers(120, 256, n)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(int)


def make_anime(seed: int) -> np.ndarray:
    """A flat-colour drawing: cel-shaded shapes with dark outlines, maybe rescaled or JPEG."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(160, 480)), int(rng.integers(160, 480))
    gray = rng.random() < 0.2
    colors = _palette(rng, 6)
    canvas = np.empty((h, w, 3), np.uint8)
    if rng.random() < 0.4:  # simple vertical gradient background
        ramp = np.linspace(0, 1, h)[:, None, None]
        canvas[:] = np.clip(colors[0] * (1 - ramp) + colors[1] * ramp, 0, 255).astype(np.uint8)
    else:
        canvas[:] = colors[0] if rng.random() < 0.6 else 255
    line = cv2.LINE_AA if rng.random() < 0.7 else cv2.LINE_8
    ink = tuple(int(v) for v in rng.integers(0, 60, 3))
    for _ in range(int(rng.integers(3, 9))):
        mask = np.zeros((h, w), np.uint8)
        kind = rng.integers(0, 3)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(min(h, w) // 10, min(h, w) // 3))
        if kind == 0:
            cv2.circle(mask, (cx, cy), r, 255, -1, line)
        elif kind == 1:
            axes = (r, int(r * rng.uniform(0.4, 1.0)))
            cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, line)
        else:
            pts = (np.array([cx, cy]) + rng.integers(-r, r, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(pts)], 255, line)
        base = colors[int(rng.integers(1, len(colors)))]
        tones = [base, base * 0.75, base * 0.55][: int(rng.integers(1, 4))]
        # Cel shading: each darker tone covers a shifted copy of the shape.
        layer = mask.astype(np.float32)[..., None] / 255
        canvas[:] = (canvas * (1 - layer) + tones[0] * layer).astype(np.uint8)
        for i, tone in enumerate(tones[1:], 1):
            shift = np.float32([[1, 0, r * 0.3 * i], [0, 1, r * 0.2 * i]])
            shade = cv2.warpAffine(mask, shift, (w, h)).astype(np.float32)[..., None] / 255
            shade = shade * layer
            canvas[:] = (canvas * (1 - shade) + tone * shade).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, ink, int(rng.integers(1, 4)), line)
    image = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY) if gray else canvas
    if rng.random() < 0.3:
        image = _rescale(image, float(rng.choice([0.5, 0.75, 1.5, 2.0])))
    if rng.random() < 0.4:
        image = _jpeg(image, 85)
    return np.ascontiguousarray(image)


def labelled_set(seeds: range) -> list[tuple[np.ndarray, str]]:
    """Two images per seed: one photo, one anime drawing."""
    return [(make_photo(s), "photo") for s in seeds] + [(make_anime(s), "anime") for s in seeds]


# --- accuracy on the held-out seeds -----------------------------------------


def test_accuracy_on_held_out_set() -> None:
    items = labelled_set(HELD_OUT_SEEDS)
    confusion = {(t, p): 0 for t in ("photo", "anime") for p in ("photo", "anime")}
    for image, truth in items:
        confusion[(truth, classify_content(image).kind)] += 1
    accuracy = (confusion[("photo", "photo")] + confusion[("anime", "anime")]) / len(items)
    print(
        f"\ncontent classifier, held-out seeds {HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1}: "
        f"accuracy {accuracy:.3f} on {len(items)} images; "
        + ", ".join(f"{t}->{p}: {n}" for (t, p), n in confusion.items())
    )
    assert accuracy >= 0.9, confusion


# --- smoke, shapes, dtypes, exceptions ---------------------------------------


def test_guess_fields() -> None:
    guess = classify_content(make_anime(7))
    assert isinstance(guess, ContentGuess)
    assert guess.kind in ("photo", "anime")
    assert 0.0 <= guess.score <= 1.0
    assert guess.reason.endswith(guess.kind)
    with pytest.raises(AttributeError):
        guess.kind = "photo"  # type: ignore[misc]


def test_features_are_finite_floats() -> None:
    features = content_features(data.chelsea())
    assert features and all(isinstance(v, float) and np.isfinite(v) for v in features.values())


@pytest.mark.parametrize("source", ["camera", "moon", "coins"])
def test_gray_photo_is_photo(source: str) -> None:
    image = _source(source)
    assert classify_content(image).kind == "photo"
    assert classify_content(image[..., None]).kind == "photo"


def test_gray_line_art_is_anime() -> None:
    art = np.full((240, 320), 255, np.uint8)
    cv2.circle(art, (100, 120), 70, 0, 3, cv2.LINE_AA)
    cv2.rectangle(art, (180, 40), (300, 200), 0, 2, cv2.LINE_AA)
    cv2.ellipse(art, (160, 160), (60, 30), 20, 0, 360, 120, -1, cv2.LINE_AA)
    assert classify_content(art).kind == "anime"


def test_alpha_ignored() -> None:
    image = make_anime(3)
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)
    assert classify_content(np.concatenate([rgb, alpha], 2)) == classify_content(rgb)


@pytest.mark.parametrize("make", [make_photo, make_anime])
def test_uint16_and_float_same_answer_as_uint8(make) -> None:
    image = make(11)
    expected = classify_content(image)
    assert classify_content(image.astype(np.uint16) * 257) == expected
    assert classify_content(image.astype(np.float32) / 255) == expected


def test_deterministic() -> None:
    image = make_photo(5)
    assert classify_content(image) == classify_content(image.copy())
    assert content_features(image) == content_features(image)


def test_input_not_modified() -> None:
    image = make_anime(5)
    before = image.copy()
    classify_content(image)
    np.testing.assert_array_equal(image, before)


def test_tiny_image() -> None:
    assert classify_content(np.zeros((2, 3, 3), np.uint8)).kind in ("photo", "anime")


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (np.zeros((4, 5, 2), np.uint8), "(4, 5, 2)"),
        (np.zeros((4,), np.uint8), "(4,)"),
        (np.zeros((0, 5, 3), np.uint8), "(0, 5, 3)"),
        (np.zeros((4, 5, 3), np.int32), "int32"),
        ([[0, 1], [2, 3]], "list"),
    ],
)
def test_bad_input_raises(bad: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=re.escape(pattern)):
        classify_content(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(pattern)):
        content_features(bad)  # type: ignore[arg-type]


def test_features_computed_on_small_copy() -> None:
    """Speed sanity without a clock: a 4000x3000 input gives exactly the features of
    its float area-downscale to 256x192, so no feature ever sees the full size."""
    big = cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(big.astype(np.float32) / 255, (256, 192), interpolation=cv2.INTER_AREA)
    assert content_features(big) == content_features(small)
