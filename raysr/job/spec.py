"""The job spec: one YAML file says everything a run does. The one home of job defaults.

Unknown keys and bad values are refused before any work starts, with the key,
what was expected and what came (pydantic's messages, reformatted by
:func:`load_spec`).

Example (``jobs/demo.yaml``)::

    name: demo
    inputs: [demo-in]
    output: {path: demo-out}
    model: RealESRGAN_x4plus
    routes:
      anime: {model: realesr-animevideov3}
    engine: {tile: 256}
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raysr.engine.options import EngineOptions
from raysr.imageops.color import COLOR_METHODS
from raysr.sinks.encode import FORMATS
from raysr.sources.decode import MAX_PIXELS, MIN_SIDE_PX
from raysr.sources.listing import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

ROUTES = ("photo", "anime", "faces")
STATE_DIR = "_raysr"  # under the output folder: the job's own files (manifest, lease, report, segment work)
MANIFEST_LOCATION = f"{STATE_DIR}/manifest"  # JobSpec.manifest_uri, unless the spec's `manifest` names another place


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputSpec(_Strict):
    """Where and how outputs are written; names mirror the input tree."""

    path: str
    format: Literal["png", "jpg", "webp", "tiff"] = "png"
    quality: int = Field(default=95, ge=1, le=100)
    report: bool = False  # after each run, write `raysr report`'s page to <path>/_raysr/report.html


class EnsembleMember(_Strict):
    """A further model of a route's ensemble and its share of the per-pixel blend."""

    model: str
    weight: float = Field(gt=0, lt=1)


class RouteSpec(_Strict):
    """The model chain of one route: a background model (optionally an ensemble), then
    (route ``faces``) a face restorer.

    ``ensemble`` members run in actor pools of their own; their outputs (same scale) are
    colour-corrected to the same reference and blended, ``model`` taking ``1 - sum(weights)``.
    """

    model: str
    color: str | None = None  # None: the model family's default (registry)
    face_model: str | None = None  # restores detected faces over this route's background output
    ensemble: list[EnsembleMember] = []

    @model_validator(mode="after")
    def _ensemble_weights_leave_a_share(self) -> "RouteSpec":
        total = sum(member.weight for member in self.ensemble)
        if total >= 1:
            raise ValueError(f"ensemble weights sum to {total:g}; they must stay below 1 so that "
                             f"{self.model!r} keeps a share (1 - sum)")
        return self

    def blend_weights(self) -> list[tuple[str, float]]:
        """(model, weight) of every ensemble part, the route's model first; weights sum to 1."""
        rest = 1.0 - sum(member.weight for member in self.ensemble)
        return [(self.model, rest), *((member.model, member.weight) for member in self.ensemble)]


class RouteOverride(_Strict):
    """Send inputs whose path (relative to its input root) matches ``glob`` to ``route``."""

    glob: str
    route: Literal["photo", "anime", "faces"]


class StagesSpec(_Strict):
    color: str | None = None  # None: per model family (registry's color_correction)
    metrics: bool = True
    reference_dir: str | None = None  # ground truth, same relative names → ref PSNR/SSIM
    flag_lr_psnr_below: float | None = 20.0
    flag_delta_e_above: float | None = 12.0

    @field_validator("color")
    @classmethod
    def _known_color(cls, value: str | None) -> str | None:
        if value is not None and value not in COLOR_METHODS:
            raise ValueError(f"must be one of {COLOR_METHODS}")
        return value


class FacesSpec(_Strict):
    """Face restoration (``raysr/faces``): photos in which the probe finds a face take route ``faces``.

    The background comes from the route's model, the faces from ``model`` in an
    actor pool of its own; each face is aligned to the restorer's template,
    restored, checked against its input by the identity guard, and pasted back.
    """

    model: str = "GFPGANv1.4"
    detector: Literal["cascade", "retinaface"] = "cascade"  # cascade: offline LBP cascade (raysr/faces/detect.py)
    fidelity: float = Field(default=0.5, ge=0, le=1)  # 0: fully restored face; 1: the background model's face
    only_center_face: bool = False
    min_face_px: int = Field(default=24, ge=8)  # input px; smaller faces keep the background model's pixels
    identity_threshold: float | None = Field(default=0.5, ge=-1, le=1)  # None: no identity guard
    # Path or s3:// URI of GFPGAN's arcface_resnet18.pth (raysr/faces/arcface.py) for the identity
    # guard; None: the offline HOG embedder. Calibrate identity_threshold for the embedder chosen.
    identity_model: str | None = None
    skip: dict[str, list[int]] = {}  # input path (relative to its root) → face indices to leave untouched


class DiffusionSpec(_Strict):
    """Settings of diffusion upscalers (``stabilityai/stable-diffusion-x4-upscaler``), see ``raysr/diffusion``."""

    prompt: str = ""
    negative_prompt: str = ""
    noise_level: int = Field(default=20, ge=0, le=350)
    guidance_scale: float = Field(default=9.0, ge=0)
    steps: int = Field(default=50, ge=1, le=1000)
    seed: int = Field(default=0, ge=0)
    tile: int = Field(default=128, ge=32)  # input px per tile; SD x4 is trained on 128 px inputs
    tile_overlap: int = Field(default=32, ge=0)  # input px shared by neighbouring tiles, cross-faded


class VideoSpec(_Strict):
    """How restored videos are encoded (audio, subtitles and chapters are copied, never re-encoded)."""

    codec: Literal["libx264", "libx265", "ffv1"] = "libx264"
    crf: int = Field(default=18, ge=0, le=51)
    preset: str = "medium"
    pix_fmt: str | None = None  # None: keep the input's bit depth (10-bit stays 10-bit)
    segment_seconds: float = Field(default=10.0, gt=0)
    temporal_strength: float = Field(default=0.0, ge=0, le=1)  # 0: off; flow-warped previous output blended in


class ResourcesSpec(_Strict):
    # None: one model actor per GPU of the cluster, shared among the routes by their pending items
    # (on CPU clusters one per pool, or as many as actor_resources allow); see raysr/job/actors.py.
    actors_per_model: int | None = Field(default=None, ge=1)
    # How far a GPU pool may grow while the job runs, as GPUs join an autoscaling cluster (Ray
    # Data adds an actor when its pool is busy and a GPU is free); it caps the automatic start
    # too. None: with actors_per_model unset, up to the route's pending items; with it set, the
    # pool stays at that count.
    max_actors_per_model: int | None = Field(default=None, ge=1)
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else CPU actors
    # None: 1 beside a GPU; on CPU-only clusters the node's cores (torch's threads follow the
    # CPUs Ray grants an actor, so 1 would leave the model a single thread).
    cpus_per_actor: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=1, ge=1)
    read_cpus: float = Field(default=0.5, gt=0)
    # Custom Ray resources every model actor asks for, e.g. {sr_node: 1} to keep the models
    # on the nodes started with `ray start --resources='{"sr_node": 4}'` (off the head node).
    actor_resources: dict[str, float] = {}
    # When no node of the cluster could hold one model actor (its CPUs, GPUs and actor_resources),
    # how long to wait for an autoscaler to add one before the run fails (raysr/job/actors.py).
    wait_for_node_s: float = Field(default=1200, ge=0)

    @model_validator(mode="after")
    def _max_not_below_start(self) -> "ResourcesSpec":
        if self.max_actors_per_model is not None and self.actors_per_model is not None \
                and self.max_actors_per_model < self.actors_per_model:
            raise ValueError(f"max_actors_per_model ({self.max_actors_per_model}) is below actors_per_model "
                             f"({self.actors_per_model}); raise it, or leave it unset for a pool of fixed size")
        return self

    @field_validator("actor_resources")
    @classmethod
    def _positive_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: amount for name, amount in value.items() if not amount > 0}
        if bad:
            raise ValueError(f"actor_resources amounts must be > 0, got {bad}")
        builtin = {"CPU", "GPU", "memory", "object_store_memory"} & set(value)
        if builtin:
            raise ValueError(f"actor_resources is for custom resources; set {sorted(builtin)} with "
                             f"cpus_per_actor / gpus_per_actor instead")
        return value


class LimitsSpec(_Strict):
    max_pixels: int = Field(default=MAX_PIXELS, gt=0)
    min_side: int = Field(default=MIN_SIDE_PX, ge=1)
    item_timeout_s: float = Field(default=3600, gt=0)


class ValidateSpec(_Strict):
    """`raysr validate`: score the job's models on a sample of its own inputs (raysr/job/validate.py)."""

    sample: int = Field(default=16, ge=1)  # inputs drawn at random from the listing
    seed: int = Field(default=0, ge=0)  # draws the sample and every item's degradation
    second_order: bool = False  # add Real-ESRGAN's second, milder degradation round
    max_side: int = Field(default=256, ge=16)  # centre crop per item, px per side
    compare_models: list[str] = []  # extra registry names or weights paths, scored beside the routes'


# The YAML key is `validate`; pydantic warns that it shadows the deprecated BaseModel.validate.
warnings.filterwarnings("ignore", message='Field name "validate" in "JobSpec" shadows', category=UserWarning)


class JobSpec(_Strict):
    """A raysr job. See the README's "Job spec" section for every key."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    inputs: list[str] = Field(min_length=1)
    extensions: list[str] = list(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    output: OutputSpec
    manifest: str | None = None  # default: <output>/_raysr/manifest
    model: str = "RealESRGAN_x4plus"  # the photo route's model unless routes say otherwise
    routes: dict[Literal["photo", "anime", "faces"], RouteSpec] = {}
    route_overrides: list[RouteOverride] = []
    engine: EngineOptions = EngineOptions()
    stages: StagesSpec = StagesSpec()
    faces: FacesSpec | None = None  # None: no face detection, no route ``faces``
    diffusion: DiffusionSpec = DiffusionSpec()
    video: VideoSpec = VideoSpec()
    resources: ResourcesSpec = ResourcesSpec()
    limits: LimitsSpec = LimitsSpec()
    validate: ValidateSpec = ValidateSpec()
    weights_dir: str | None = None
    resume: bool = True
    force: bool = False
    retry_failed_only: bool = False
    allow_errors: bool = False

    @field_validator("extensions")
    @classmethod
    def _dotted_lower(cls, values: list[str]) -> list[str]:
        return [value.lower() if value.startswith(".") else f".{value.lower()}" for value in values]

    @model_validator(mode="after")
    def _output_format_known(self) -> "JobSpec":
        if self.output.format not in FORMATS:
            raise ValueError(f"output.format must be one of {FORMATS}")
        return self

    # -- derived -------------------------------------------------------------
    @property
    def manifest_uri(self) -> str:
        return self.manifest or self.state_uri("manifest")

    def state_uri(self, name: str) -> str:
        """``<output>/_raysr/<name>``: where the job keeps a file of its own beside its outputs."""
        return f"{self.output.path.rstrip('/')}/{STATE_DIR}/{name}"

    def route_spec(self, route: str) -> RouteSpec:
        """The chain for ``route``; routes not configured fall back to the top-level model
        (and, for ``faces``, to ``faces.model`` as the face restorer)."""
        configured = self.routes.get(route) or RouteSpec(model=self.model)
        if route == "faces" and configured.face_model is None and self.faces is not None:
            return configured.model_copy(update={"face_model": self.faces.model})
        return configured

    def active_routes(self) -> tuple[str, ...]:
        """Routes items can take in this job (``faces`` only when face restoration is on)."""
        return tuple(route for route in ROUTES if route != "faces" or self.faces is not None)

    def models(self) -> dict[str, str]:
        """route → model name, for every route."""
        return {route: self.route_spec(route).model for route in self.active_routes()}

    def chain_models(self, route: str) -> list[str]:
        """Every model a route runs besides its main one (ensemble members, face restorer)."""
        chain = self.route_spec(route)
        return [member.model for member in chain.ensemble] + ([chain.face_model] if chain.face_model else [])

    def settings_hash(self, route: str, model_digests: dict[str, str | None] | None = None) -> str:
        """Hash of every setting that changes a route's output pixels or file.

        ``model_digests`` (model → weights sha256) covers :meth:`chain_models`, so a new
        file under a face or ensemble model's name redoes the route's items.
        """
        chain = self.route_spec(route)
        settings = {
            "model": chain.model,
            "engine": self.engine.settings(),
            "color": self.route_spec(route).color or self.stages.color,
            "output": self.output.model_dump(exclude={"path", "report"}),  # the report is a view, not pixels
            "video": self.video.model_dump(),
        }
        if chain.ensemble:
            settings["ensemble"] = chain.blend_weights()
        if model_digests:  # weights of the chain's other models (faces, ensemble members)
            settings["model_digests"] = dict(sorted(model_digests.items()))
        if chain.face_model is not None:
            # identity_model only when set: specs written before it existed keep their hash.
            faces = (self.faces or FacesSpec()).model_dump(exclude={"model", "skip"})
            if faces["identity_model"] is None:
                del faces["identity_model"]
            settings["faces"] = {"model": chain.face_model, **faces}
        if _is_diffusion(chain.model):
            settings["diffusion"] = self.diffusion.model_dump()
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _is_diffusion(model: str) -> bool:
    from raysr.models.registry import get_spec, is_registered

    return is_registered(model) and get_spec(model).arch == "diffusers"


class SpecError(ValueError):
    """The job spec is invalid; the message lists every problem with its key."""


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid job spec"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        got = problem.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        message = "unknown key; check the spelling against the README's job spec section" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def parse_spec(data: dict, source: str = "job spec") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_errors(error, source)) from None


def load_spec(path: str | Path, **overrides) -> JobSpec:
    """Read and validate a YAML job spec; ``overrides`` replace top-level keys (CLI flags).

    Relative input/output/manifest paths are resolved against the current directory.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job spec file; check the path (examples are in jobs/)") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job spec is a mapping of keys (name, inputs, output, …)")
    data.update({key: value for key, value in overrides.items() if value is not None})
    return parse_spec(data, str(path))


def dump_spec(spec: JobSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
