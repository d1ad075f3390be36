import pytest

from raysr.engine.options import TILE_LAYOUT
from raysr.job.spec import SpecError, dump_spec, load_spec, parse_spec

MINIMAL = {"name": "j", "inputs": ["in"], "output": {"path": "out"}}


def test_defaults_live_in_the_spec():
    spec = parse_spec(MINIMAL)
    assert spec.model == "RealESRGAN_x4plus" and spec.resume and spec.output.format == "png"
    assert spec.manifest_uri == "out/_raysr/manifest"
    assert spec.engine.precision == "auto"
    assert spec.models() == {"photo": "RealESRGAN_x4plus", "anime": "RealESRGAN_x4plus"}


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"inptus": ["x"]}, "inptus: unknown key"),
        ({"output": {"path": "o", "format": "gif"}}, "output.format"),
        ({"engine": {"tile": 4}}, "engine.tile"),
        ({"engine": {"precision": "int8"}}, "engine.precision"),
        ({"stages": {"color": "sepia"}}, "stages.color"),
        ({"routes": {"cartoon": {"model": "x"}}}, "routes.cartoon"),
        ({"resources": {"actors_per_model": 0}}, "resources.actors_per_model"),
        ({"name": "bad name/"}, "name"),
        ({"routes": {"photo": {"model": "a", "ensemble": [{"model": "b", "weight": 0.6}, {"model": "c", "weight": 0.4}]}}},
         "ensemble weights sum to 1"),
        ({"faces": {"fidelity": 2}}, "faces.fidelity"),
        ({"diffusion": {"steps": 0}}, "diffusion.steps"),
    ],
)
def test_bad_specs_name_the_key(patch, key):
    with pytest.raises(SpecError) as info:
        parse_spec({**MINIMAL, **patch})
    assert key in str(info.value)


def test_settings_hash_changes_with_what_changes_pixels():
    base = parse_spec(MINIMAL)
    assert base.settings_hash("photo") == parse_spec({**MINIMAL, "resources": {"actors_per_model": 3}}).settings_hash("photo")
    assert base.settings_hash("photo") != parse_spec({**MINIMAL, "engine": {"tile_pad": 8}}).settings_hash("photo")
    assert base.engine.settings()["tile_layout"] == TILE_LAYOUT  # a new window layout redoes tiled items
    assert base.settings_hash("photo") != parse_spec({**MINIMAL, "model": "realesr-animevideov3"}).settings_hash("photo")
    assert base.settings_hash("photo") != parse_spec({**MINIMAL, "output": {"path": "o", "format": "jpg"}}).settings_hash("photo")
    # Writing the HTML report changes no pixel: turning it on must not redo an archive.
    assert base.settings_hash("photo") == parse_spec({**MINIMAL, "output": {"path": "o", "report": True}}).settings_hash("photo")


def test_settings_hash_is_stable_across_releases():
    """The hash a previous release recorded for the default spec (2026-12-01, tile layout 2): a new
    spec key, or a reordering, that changes it would make every scheduled run redo its archive."""
    assert parse_spec(MINIMAL).settings_hash("photo") == "6c1bfd0d22d024ed"


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(dump_spec(parse_spec({**MINIMAL, "routes": {"anime": {"model": "realesr-animevideov3"}}})))
    spec = load_spec(path, resume=False)
    assert spec.route_spec("anime").model == "realesr-animevideov3" and not spec.resume
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(path)
    with pytest.raises(SpecError, match=r"job-typo\.yaml: no such job spec file; check the path"):
        load_spec(tmp_path / "job-typo.yaml")


def test_repo_job_specs_are_valid():
    from pathlib import Path

    jobs = sorted(Path(__file__).resolve().parents[2].joinpath("jobs").glob("*.yaml"))
    assert jobs, "jobs/ holds example specs"
    for job in jobs:
        load_spec(job)


def test_ensembles_blend_weights_and_hash():
    spec = parse_spec({**MINIMAL, "routes": {"photo": {"model": "a", "ensemble": [{"model": "b", "weight": 0.25}]}}})
    assert spec.route_spec("photo").blend_weights() == [("a", 0.75), ("b", 0.25)]
    assert spec.chain_models("photo") == ["b"] and spec.chain_models("anime") == []
    plain = parse_spec({**MINIMAL, "routes": {"photo": {"model": "a"}}})
    assert spec.settings_hash("photo") != plain.settings_hash("photo")
    # a new weights file under a member's name redoes the route's items
    assert spec.settings_hash("photo", {"b": "sha-1"}) != spec.settings_hash("photo", {"b": "sha-2"})


def test_faces_route_exists_only_when_faces_are_on():
    assert "faces" not in parse_spec(MINIMAL).active_routes()
    spec = parse_spec({**MINIMAL, "faces": {"model": "GFPGANv1.3"}})
    assert spec.active_routes() == ("photo", "anime", "faces")
    assert spec.route_spec("faces").face_model == "GFPGANv1.3"
    assert spec.route_spec("faces").model == spec.model and spec.route_spec("photo").face_model is None
    assert spec.chain_models("faces") == ["GFPGANv1.3"]
    stricter = parse_spec({**MINIMAL, "faces": {"model": "GFPGANv1.3", "identity_threshold": 0.8}})
    assert spec.settings_hash("faces") != stricter.settings_hash("faces")
    assert spec.settings_hash("photo") == stricter.settings_hash("photo")


@pytest.mark.parametrize("resources, message", [
    ({"sr_node": 0}, "must be > 0"),
    ({"GPU": 1}, "gpus_per_actor"),
])
def test_actor_resources_are_custom_and_positive(resources, message):
    with pytest.raises(SpecError, match=rf"resources\.actor_resources.*{message}"):
        parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}, "resources": {"actor_resources": resources}})
