import cv2
import numpy as np

from raysr.faces import has_faces
from raysr.job.spec import FacesSpec


def test_finds_face_on_large_and_gray_copies(astronaut):
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # probed at 512 px
    found, reason = has_faces(big, FacesSpec())
    assert found and "1 face(s)" in reason and "cascade" in reason
    gray16 = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[..., None].astype(np.uint16) * 257
    assert has_faces(gray16, FacesSpec())[0]


def test_no_face_and_too_small(astronaut):
    found, reason = has_faces(np.full((300, 300, 3), 0.5, np.float32), FacesSpec())
    assert not found and "no face >= 24 px" in reason
    assert not has_faces(astronaut, FacesSpec(min_face_px=300))[0]


def test_routing_on_a_labelled_set_of_faces_and_non_faces():
    """scikit-image's LFW subset: 100 tight 25 px face crops, then 100 non-face crops.

    Upscaled 4x into a plain 160 px canvas (the probe sees photos, not tight crops). On all
    200 the probe scores accuracy 0.95 (recall 0.90, specificity 1.00); 40 keep the test short."""
    from skimage import data

    crops = data.lfw_subset()
    chosen = [*range(0, 100, 5), *range(100, 200, 5)]
    found = []
    for index in chosen:
        face = cv2.resize((crops[index] * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((160, 160), int(face.mean()), np.uint8)
        canvas[30:130, 30:130] = face
        found.append(has_faces(np.repeat(canvas[..., None], 3, axis=2), FacesSpec(min_face_px=16))[0])
    recall = sum(found[:20]) / 20
    specificity = 1 - sum(found[20:]) / 20
    assert recall >= 0.8 and specificity >= 0.9, (recall, specificity)
