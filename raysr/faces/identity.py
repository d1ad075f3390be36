"""Identity guard: does a restored face still look like its input?

A :class:`FaceEmbedder` maps an aligned 512×512 face crop to a unit vector;
:func:`identity_score` is the cosine of two such vectors. The guard in
:mod:`raysr.faces.restore` blends a restored face back toward the background
model's face when the score falls below ``faces.identity_threshold``.

Production: an ArcFace-class network (e.g. insightface's ``buffalo_l``
``w600k_r50`` or facexlib's ``arcface``) plugs in as a ``FaceEmbedder`` whose
``embed`` warps the crop to ArcFace's 112×112 five-point template, runs the
net on RGB in [-1, 1] and L2-normalises its 512-d output; its weights resolve
through the registry like every other weight. Same-person cosines are then
~0.4–0.8 and different people ~0–0.2.

Offline (tests, machines without that weight): :class:`HogFaceEmbedder`, a
classical descriptor: histograms of oriented gradients (Dalal & Triggs, 2005)
over a grid of the inner face at 64×64, mean-centred so that a featureless or
noise-only crop scores ~0 against a face. What it can tell apart, measured
on scikit-image's astronaut (see tests/faces/test_identity.py): the same face
blurred or re-JPEG'd scores ~0.8–0.9, the face against a different region or
a mirrored face much lower, noise/garbage ~0. It is NOT a person-identity
model: two different frontal faces at the same pose can still score high, so
it guards against restorers that hallucinate or break a face, not against
subtle identity drift.

Input crops: ``(512, 512, 3)`` float32 RGB in [0, 1], aligned to the template.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class FaceEmbedder(Protocol):
    """Aligned face crop → unit-norm embedding (1-D float32)."""

    name: str

    def embed(self, face: np.ndarray) -> np.ndarray:
        """Embed one ``(S, S, 3)`` float32 RGB [0, 1] aligned crop."""
        ...


# Inner face of the 512 template (eyes at y≈240, mouth at y≈371): brows to chin.
_INNER = (slice(150, 450), slice(106, 406))
_SIDE = 64


class HogFaceEmbedder:
    """HOG over a 8×8-cell grid of the inner face at 64×64 px, mean-centred, L2-normalised.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> face = rng.random((512, 512, 3), dtype=np.float32)
        >>> vector = HogFaceEmbedder().embed(face)
        >>> vector.ndim, round(float(np.linalg.norm(vector)), 3)
        (1, 1.0)
    """

    name = "hog-offline"

    def embed(self, face: np.ndarray) -> np.ndarray:
        if not isinstance(face, np.ndarray) or face.ndim != 3 or face.shape[2] != 3:
            raise ValueError(f"face must be an aligned (S, S, 3) crop, got shape {getattr(face, 'shape', None)}")
        from skimage.feature import hog

        scale = face.shape[0] / 512.0
        rows = slice(int(_INNER[0].start * scale), int(_INNER[0].stop * scale))
        cols = slice(int(_INNER[1].start * scale), int(_INNER[1].stop * scale))
        gray = cv2.cvtColor(np.ascontiguousarray(face[rows, cols], dtype=np.float32), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(gray, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)
        vector = hog(small, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                     block_norm="L2-Hys", feature_vector=True).astype(np.float32)
        vector -= vector.mean()
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 1e-8 else vector


def identity_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1]; 0 when either is all zeros."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 1e-12 else 0.0


def make_embedder(name: str = "hog-offline") -> FaceEmbedder:
    """The embedder by name; only the offline ``hog-offline`` ships today."""
    if name == "hog-offline":
        return HogFaceEmbedder()
    raise ValueError(f"face embedder must be 'hog-offline', got {name!r}; an ArcFace embedder is not wired yet")
