"""Restore the faces of one image over its background-model output.

The official GFPGAN pipeline (``GFPGANer.enhance``, https://github.com/TencentARC/GFPGAN/blob/v1.3.8/gfpgan/utils.py,
Apache-2.0) detects on the input, crops each face from the input to the 512
template, restores it in [-1, 1], and pastes it into the background upscaled
by the job's Real-ESRGAN model with the landmarks scaled by the upscale factor.
:func:`restore_faces` does the same, plus what the official pipeline lacks:
fidelity blending, colour matching to the background face, an identity guard
and a record per face for the manifest.

Restorer calls, as the official repositories make them (spandrel's descriptor
``__call__`` feeds GFPGAN [0, 1], so raysr calls the module itself):

- GFPGAN: ``module(x, return_rgb=False, randomize_noise=False)[0]``, x in
  [-1, 1]. ``randomize_noise=False`` uses the checkpoint's stored StyleGAN2
  noise maps, so the same input gives the same face every run.
- RestoreFormer: ``module(x)[0]``, [-1, 1].
- CodeFormer: ``module(x, weight=w)[0]``, [-1, 1], with ``w = faces.fidelity``
  (CodeFormer's own fidelity knob; 1 keeps the input's identity).

Dtypes: inputs ``uint8``, ``uint16`` or ``float32`` [0, 1] RGB ``(H, W, 3)``;
the work is float32, the result has the background's dtype, so 16-bit images
keep 16 bits. Pixels outside every face mask are returned unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from raysr.engine.precision import fp32_twin, pick_device, plan_precision, prepare_module
from raysr.faces.align import FACE_SIZE, estimate_alignment, face_mask, match_color, paste_face, warp_face
from raysr.faces.detect import Face, FaceDetector
from raysr.faces.identity import FaceEmbedder, identity_score
from raysr.imageops._checks import check_image, from_float01, to_float01
from raysr.models.load import load_model

if TYPE_CHECKING:
    from raysr.job.spec import FacesSpec

FACE_ARCHS = ("GFPGAN", "RestoreFormer", "CodeFormer")
ACTIONS = ("restored", "blended", "skipped", "too_small")
# Identity guard: weights toward the background face tried in turn until the score passes.
_GUARD_STEPS = (0.5, 1.0)


class Restorer(Protocol):
    """An aligned-face restorer: ``(S, S, 3)`` float32 RGB [0, 1] in and out."""

    name: str
    applies_fidelity: bool  # True: ``restore`` uses ``fidelity`` itself (CodeFormer)

    def restore(self, face: np.ndarray, fidelity: float) -> np.ndarray: ...


class FaceRestorer:
    """A face restoration network from the registry (or a path), loaded once.

    Args:
        model: registry name (``GFPGANv1.4``, ``GFPGANv1.3``, ``RestoreFormer``,
            ``CodeFormer``) or a weights file spandrel recognises as one of them.
        weights_dir: weights cache.
        precision: ``auto``/``fp32``/``fp16``/``bf16``, decided by
            :mod:`raysr.engine.precision`.
    """

    def __init__(self, model: str, weights_dir: str | None = None, precision: str = "auto") -> None:
        self.loaded = load_model(model, weights_dir)
        if self.loaded.arch not in FACE_ARCHS:
            raise ValueError(
                f"{model}: is a {self.loaded.arch} model, not a face restorer; set faces.model to one of "
                "GFPGANv1.3, GFPGANv1.4, RestoreFormer, CodeFormer")
        self.name = self.loaded.spec.name
        self.applies_fidelity = self.loaded.arch == "CodeFormer"
        plan = plan_precision(precision, pick_device(), self.loaded.supports_fp16, self.loaded.supports_bf16)
        # StyleGAN2's modulated convs keep 5-D weights, which channels_last cannot lay out.
        self.plan = replace(plan, channels_last=False)
        self.module = prepare_module(self.loaded.module, self.plan)
        self._fp32: torch.nn.Module | None = None
        self.precision_fallbacks = 0

    def _forward(self, module: torch.nn.Module, x: torch.Tensor, fidelity: float) -> torch.Tensor:
        if self.loaded.arch == "GFPGAN":
            return module(x, return_rgb=False, randomize_noise=False)[0]
        if self.loaded.arch == "CodeFormer":
            return module(x, weight=fidelity)[0]
        return module(x)[0]

    @torch.inference_mode()
    def restore(self, face: np.ndarray, fidelity: float) -> np.ndarray:
        """Restore one aligned ``(512, 512, 3)`` float32 RGB [0, 1] crop; same shape and range out."""
        x = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None] * 2.0 - 1.0
        x = x.to(device=self.plan.device, dtype=self.plan.input_dtype)
        if self.plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.plan.autocast():
            out = self._forward(self.module, x, fidelity)
        if self.plan.check_finite and not torch.isfinite(out).all():
            # Half-precision overflow: rerun this face in fp32 (recorded per actor).
            self._fp32 = self._fp32 or fp32_twin(self.module, self.plan)
            out = self._forward(self._fp32, x.float(), fidelity)
            self.precision_fallbacks += 1
        out = (out.float().clamp(-1.0, 1.0) + 1.0) / 2.0
        return out[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class FaceRecord:
    """What happened to one face, as stored in the manifest's ``faces`` JSON.

    Attributes:
        index: position in the image's face list (faces sorted left to right);
            ``faces.skip`` refers to it.
        box: ``[x1, y1, x2, y2]`` input px, rounded to 0.1.
        score: detector confidence in [0, 1].
        size_px: face size in input px (geometric mean of the box sides).
        identity: cosine of restored vs input face embedding; ``None`` when not restored.
        action: ``restored``, ``blended`` (identity guard pulled it toward the
            background face), ``skipped`` (``faces.skip`` or not the centre face
            under ``only_center_face``), ``too_small`` (< ``faces.min_face_px``).
        guard_weight: weight of the background face after the guard (0 = none).
    """

    index: int
    box: list[float]
    score: float
    size_px: float
    identity: float | None
    action: str
    guard_weight: float = 0.0


def records_json(records: Iterable[FaceRecord]) -> str:
    """The manifest's ``faces`` column: a compact JSON list of :class:`FaceRecord` dicts."""
    return json.dumps([asdict(record) for record in records], separators=(",", ":"))


def _to_u8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else from_float01(to_float01(image), np.uint8)


def _center_face(faces: list[Face], shape: tuple[int, int]) -> int:
    centre = np.array([shape[1] / 2.0, shape[0] / 2.0])
    distances = [np.linalg.norm([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] - centre) for f in faces]
    return int(np.argmin(distances))


def detect_faces(input_rgb: np.ndarray, detector: FaceDetector, options: FacesSpec) -> list[Face]:
    """Faces on an ``(h, w, 3)`` uint8/uint16/float32 RGB input, detected on an 8-bit copy.

    Faces down to the cascade's native 24 px are found at no extra cost (and later
    recorded as too_small); below that only when ``options.min_face_px`` asks for them.
    """
    return detector.detect(_to_u8(input_rgb), min_face_px=min(options.min_face_px, 24))


def restore_faces(input_rgb: np.ndarray, background_rgb: np.ndarray, restorer: Restorer,
                  detector: FaceDetector, embedder: FaceEmbedder, options: FacesSpec,
                  skip: Iterable[int] = (), faces: list[Face] | None = None) -> tuple[np.ndarray, list[FaceRecord]]:
    """Detect faces on the input, restore them, paste them into the background output.

    Args:
        input_rgb: ``(h, w, 3)`` RGB, uint8/uint16/float32 [0, 1]: the item as read.
        background_rgb: ``(s·h, s·w, 3)`` RGB, same dtypes: the background
            model's output; ``s`` (any factor >= 1 the job produced) is
            ``background height / input height``.
        restorer: see :class:`Restorer` (a :class:`FaceRestorer` in jobs).
        detector: finds faces on the input.
        embedder: identity guard's embedder.
        options: ``fidelity``, ``only_center_face``, ``min_face_px``,
            ``identity_threshold`` (``None`` turns the guard off).
        skip: face indices to leave as the background model made them.
        faces: faces already found on the input (video: tracked and smoothed by
            :class:`raysr.faces.track.FaceTracker`); ``None`` runs ``detector``.

    Returns:
        ``(image, records)``: ``image`` has the background's shape and dtype;
        one record per detected face, in index order.

    Raises:
        ValueError: bad images or shapes, naming both shapes.
    """
    check_image(input_rgb, "input_rgb")
    check_image(background_rgb, "background_rgb")
    if input_rgb.ndim != 3 or input_rgb.shape[2] != 3 or background_rgb.shape[2:] != (3,):
        raise ValueError(f"restore_faces takes RGB (H, W, 3) images, got input {input_rgb.shape} "
                         f"and background {background_rgb.shape}; convert gray/alpha first (FaceStage does)")
    scale = background_rgb.shape[0] / input_rgb.shape[0]
    if abs(background_rgb.shape[1] - input_rgb.shape[1] * scale) > max(scale, 1.0) + 1:
        raise ValueError(f"background {background_rgb.shape[:2]} is not a uniform upscale of input "
                         f"{input_rgb.shape[:2]}; faces need the background model's output at one scale")
    # 1. Detect (unless given); index faces left to right so `faces.skip` is stable across runs.
    if faces is None:
        faces = detect_faces(input_rgb, detector, options)
    faces = sorted(faces, key=lambda f: (f.box[0], f.box[1]))
    if not faces:
        return background_rgb, []
    centre = _center_face(faces, input_rgb.shape[:2]) if options.only_center_face else None
    skip = set(skip)
    source = to_float01(input_rgb)
    output = to_float01(background_rgb)
    mask = face_mask(FACE_SIZE)
    records = []
    for index, face in enumerate(faces):
        box = [round(float(v), 1) for v in face.box]
        base = dict(index=index, box=box, score=round(face.score, 4), size_px=round(face.size, 1))
        if index in skip or (centre is not None and index != centre):
            records.append(FaceRecord(**base, identity=None, action="skipped"))
            continue
        if face.size < options.min_face_px:
            records.append(FaceRecord(**base, identity=None, action="too_small"))
            continue
        # 2. Crop from the input and from the background at the same template pose.
        input_face = warp_face(source, estimate_alignment(face.landmarks))
        matrix = estimate_alignment(face.landmarks * scale)
        background_face = warp_face(output, matrix)
        # 3. Restore, apply fidelity, match colours to the background face.
        restored = restorer.restore(input_face, options.fidelity)
        if not restorer.applies_fidelity and options.fidelity > 0:
            restored = (1.0 - options.fidelity) * restored + options.fidelity * background_face
        restored = match_color(restored.astype(np.float32), background_face, mask)
        # 4. Identity guard: pull toward the background face until the face passes.
        reference = embedder.embed(input_face)
        identity = identity_score(embedder.embed(restored), reference)
        action, guard = "restored", 0.0
        threshold = options.identity_threshold
        if threshold is not None and identity < threshold:
            action, candidate = "blended", restored
            for guard in _GUARD_STEPS:
                candidate = (1.0 - guard) * restored + guard * background_face
                identity = identity_score(embedder.embed(candidate), reference)
                if identity >= threshold:
                    break
            restored = candidate
        # 5. Paste into the background with the soft mask.
        output = paste_face(output, restored.astype(np.float32), matrix, mask)
        records.append(FaceRecord(**base, identity=round(identity, 4), action=action, guard_weight=guard))
    return from_float01(output, background_rgb.dtype), records
