"""Fixtures for the face tests: a real photo with a face, the offline detector and embedder."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut, (512, 512, 3) uint8; her face spans about x 170-275, y 60-170."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def detector():
    from raysr.faces import CascadeFaceDetector

    return CascadeFaceDetector()


@pytest.fixture(scope="session")
def embedder():
    from raysr.faces import HogFaceEmbedder

    return HogFaceEmbedder()


@pytest.fixture(scope="session")
def astronaut_face(astronaut, detector):
    faces = detector.detect(astronaut)
    assert faces, "the cascade must find the astronaut's face"
    return faces[0]
