import cv2
import numpy as np
import pytest

from raysr.faces.align import (FFHQ_TEMPLATE_512, estimate_alignment, face_mask, invert_alignment, match_color,
                               paste_face, warp_face)


def as_float(image):
    return image.astype(np.float32) / 255.0


def test_template_maps_to_itself():
    matrix = estimate_alignment(FFHQ_TEMPLATE_512)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-3)


def test_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        estimate_alignment(np.zeros((4, 2)))


def test_landmarks_land_on_template(astronaut_face):
    matrix = estimate_alignment(astronaut_face.landmarks)
    mapped = np.c_[astronaut_face.landmarks, np.ones(5)] @ matrix.T
    assert np.abs(mapped - FFHQ_TEMPLATE_512).max() < 40  # coarse landmarks, similarity fit


def test_warp_inverse_round_trip(astronaut, astronaut_face):
    """Crop to 512, warp back: the face region matches the original (only interpolation error)."""
    image = as_float(astronaut)
    matrix = estimate_alignment(astronaut_face.landmarks)
    crop = warp_face(image, matrix)
    back = cv2.warpAffine(crop, invert_alignment(matrix), (512, 512), flags=cv2.INTER_LINEAR)
    x1, y1, x2, y2 = (int(v) for v in astronaut_face.box)
    error = np.abs(back[y1:y2, x1:x2] - image[y1:y2, x1:x2]).mean()
    assert crop.shape == (512, 512, 3) and error < 0.02


def test_mask_is_soft_and_zero_at_edges():
    mask = face_mask()
    assert mask[256, 256] == pytest.approx(1.0) and mask[0].max() == 0 and mask[:, -1].max() == 0
    assert 0.05 < mask[256, 40] < 0.95  # feather, not a hard step


def test_identity_paste_is_near_lossless(astronaut, astronaut_face):
    image = as_float(astronaut)
    matrix = estimate_alignment(astronaut_face.landmarks)
    pasted = paste_face(image, warp_face(image, matrix), matrix)
    assert np.abs(pasted - image).max() < 0.25 and np.abs(pasted - image).mean() < 1e-3


def _boundary_energy(image, mask):
    """Mean gradient magnitude on the mask's 0.5 contour vs inside the mask."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    edge = (mask > 0.3) & (mask < 0.7)
    inside = mask > 0.99
    return grad[edge].mean(), grad[inside].mean()


def test_paste_leaves_no_visible_box(astronaut, astronaut_face):
    """A brighter, recoloured face pasted with colour matching: no step along the paste boundary."""
    image = as_float(astronaut)
    matrix = estimate_alignment(astronaut_face.landmarks)
    background_face = warp_face(image, matrix)
    wrong = np.clip(background_face * 1.3 + [0.1, 0.0, -0.05], 0, 1).astype(np.float32)
    fixed = match_color(wrong, background_face, face_mask())
    pasted = paste_face(image, fixed, matrix)
    warped_mask = cv2.warpAffine(face_mask(), invert_alignment(matrix), (512, 512))
    edge, inside = _boundary_energy(pasted, warped_mask)
    edge_before, _ = _boundary_energy(image, warped_mask)
    assert edge <= max(inside, edge_before * 1.1)
    assert np.abs(fixed - background_face).mean() < np.abs(wrong - background_face).mean() / 3


def test_paste_clipped_at_border(astronaut, astronaut_face):
    """A face half outside the image: paste works and only the inside changes."""
    image = as_float(astronaut)[:, 200:]  # cuts through the face
    landmarks = astronaut_face.landmarks - [200, 0]
    matrix = estimate_alignment(landmarks)
    crop = warp_face(image, matrix)
    pasted = paste_face(image, np.zeros_like(crop), matrix)
    assert pasted.shape == image.shape and pasted[110, 5].max() < image[110, 5].max()
    assert np.array_equal(pasted[400:], image[400:])


def test_paste_outside_image_is_noop():
    image = np.full((64, 64, 3), 0.5, np.float32)
    matrix = estimate_alignment(FFHQ_TEMPLATE_512 / 8 + 1000)
    assert np.array_equal(paste_face(image, np.zeros((512, 512, 3), np.float32), matrix), image)


def test_rejects_uint8():
    with pytest.raises(ValueError, match="float32"):
        paste_face(np.zeros((8, 8, 3), np.uint8), np.zeros((512, 512, 3), np.float32), np.eye(2, 3))
