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
