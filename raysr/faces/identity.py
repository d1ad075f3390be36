"""Identity guard: does a restored face still look like its input?

A :class:`FaceEmbedder` maps an aligned 512×512 face crop to a unit vector;
:func:`identity_score` is the cosine of two such vectors. The guard in
:mod:`raysr.faces.restore` blends a restored face back toward the background
model's face when the score falls below ``faces.identity_threshold``.

Production: :class:`raysr.faces.arcface.ArcFaceEmbedder`, GFPGAN's ArcFace
ResNet-18 (``arcface_resnet18.pth``), via ``make_embedder("arcface", path)``. It
embeds the crop as GFPGAN's identity loss does: gray, the whole crop resized to
128×128, [-1, 1]; its 512-d output is L2-normalised.

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

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

if TYPE_CHECKING:
    from raysr.job.spec import FacesSpec


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


#: Names :func:`make_embedder` accepts.
EMBEDDER_NAMES = ("hog-offline", "arcface")


def make_embedder(name: str = "hog-offline", weights_path: str | Path | None = None,
                  device: str = "auto") -> FaceEmbedder:
    """The embedder by name.

    Args:
        name: ``hog-offline`` (no weights) or ``arcface`` (needs ``weights_path``).
        weights_path: GFPGAN's ``arcface_resnet18.pth`` for ``arcface``.
        device: where ``arcface`` runs: ``auto`` (CUDA when visible, else CPU), ``cpu`` …

    Raises:
        ValueError: unknown name, or ``arcface`` without ``weights_path``, or
            weights that do not fit (the message names the file).
        FileNotFoundError: ``weights_path`` does not exist.
    """
    names = ", ".join(repr(known) for known in EMBEDDER_NAMES)
    if name == "hog-offline":
        if weights_path is not None:
            raise ValueError(f"face embedder 'hog-offline' takes no weights, got weights_path={weights_path!r}")
        return HogFaceEmbedder()
    if name == "arcface":
        if weights_path is None:
            raise ValueError("face embedder 'arcface' needs weights_path (GFPGAN's arcface_resnet18.pth); "
                             f"embedders: {names}")
        from raysr.faces.arcface import ArcFaceEmbedder

        return ArcFaceEmbedder.from_file(weights_path, device=device)
    raise ValueError(f"face embedder must be one of {names}, got {name!r}")


def embedder_for(faces: FacesSpec, weights_dir: str | None = None) -> FaceEmbedder:
    """The job's identity embedder: ArcFace from ``faces.identity_model`` (a path or
    ``s3://`` URI, resolved and verified like every weight), else the offline HOG one."""
    if faces.identity_model is None:
        return make_embedder()
    from raysr.weights import resolve_weights

    return make_embedder("arcface", resolve_weights(faces.identity_model, weights_dir).path)
