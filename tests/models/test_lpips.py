"""LPIPS v0.1 AlexNet: the metric's properties on random weights, the key names and numbers of the
reference `lpips` package (when installed), and how its two weights files resolve offline."""

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from factories import lpips_backbone_state, lpips_lin_state
from raysr.models import lpips as lpips_module
from raysr.models.load import ModelLoadError, read_state_dict
from raysr.models.lpips import BACKBONE_MODEL, LIN_MODEL, LPIPS
from raysr.models.registry import ModelSpec, PypiFile, get_spec
from raysr.weights.resolve import ResolvedWeights, WeightsError, _Resolver, resolve_weights, sha256_file

HAS_LPIPS = importlib.util.find_spec("lpips") is not None
needs_lpips = pytest.mark.skipif(not HAS_LPIPS, reason="the `lpips` package is not installed (pip install lpips)")

@pytest.fixture(scope="module")
def metric() -> LPIPS:
    return LPIPS(lpips_backbone_state(), lpips_lin_state())


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[60:156, 180:276])  # 96x96 uint8 RGB: face and helmet


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma * 255, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_identical_is_zero_and_order_does_not_matter(metric, crop):
    other = _noisy(crop, 0.05)
    assert metric.distance(crop, crop) == 0.0
    assert metric.distance(crop, other) == pytest.approx(metric.distance(other, crop), rel=1e-6)
    assert metric.distance(crop, other) > 0


def test_grows_with_noise_strength(metric, crop):
    distances = [metric.distance(crop, _noisy(crop, sigma)) for sigma in (0.01, 0.03, 0.06, 0.12, 0.25)]
    assert all(low < high for low, high in zip(distances, distances[1:])), distances


def test_dtypes_are_compared_on_the_same_scale(metric, crop):
    other = _noisy(crop, 0.05)
    reference = metric.distance(crop, other)
    as_uint16 = crop.astype(np.uint16) * 257
    assert metric.distance(as_uint16, other) == pytest.approx(reference, rel=1e-5)
    assert metric.distance(crop.astype(np.float32) / 255, other) == pytest.approx(reference, rel=1e-5)
    assert metric.distance(crop / 255.0, other.astype(np.float64) / 255) == pytest.approx(reference, rel=1e-5)


_RGB64 = np.zeros((64, 64, 3), np.uint8)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((64, 64), np.uint8), _RGB64, r"a must be \(H, W, 3\) RGB, got shape \(64, 64\)"),
    (_RGB64, np.zeros((64, 64, 4), np.uint8), r"b must be \(H, W, 3\) RGB, got shape \(64, 64, 4\)"),
    (np.zeros((64, 64, 3), np.int32), _RGB64, "a must have dtype in .* got int32"),
    (np.full((64, 64, 3), 1.5, np.float32), _RGB64, r"a is float32 and must lie in \[0, 1\], got min 1.5"),
    (_RGB64, np.full((64, 64, 3), np.nan, np.float32), r"b is float32 and must lie in \[0, 1\]"),
    ([[0, 0, 0]], _RGB64, "a must be a numpy array"),
    (np.zeros((30, 64, 3), np.uint8), np.zeros((30, 64, 3), np.uint8), r"sides >= 31 px, got shape \(30, 64, 3\)"),
    (np.zeros((64, 32, 3), np.uint8), _RGB64, r"same shape, got \(64, 32, 3\) and \(64, 64, 3\)"),
])
def test_bad_inputs_are_refused_with_what_came(metric, a, b, match):
    with pytest.raises(ValueError, match=match):
        metric.distance(a, b)


def test_state_dicts_that_do_not_fit_are_refused():
    lins = lpips_lin_state()
    del lins["lin4.model.1.weight"]
    with pytest.raises(ModelLoadError, match="lin-layer .*Missing key.*lin4.model.1.weight"):
        LPIPS(lpips_backbone_state(), lins)
    wrong = lpips_backbone_state() | {"features.0.weight": torch.zeros(64, 3, 3, 3)}
    with pytest.raises(ModelLoadError, match="AlexNet backbone .*features.0.weight"):
        LPIPS(wrong, lpips_lin_state())


def _shipped_lin_path():
    root = importlib.util.find_spec("lpips").submodule_search_locations[0]
    return f"{root}/weights/v0.1/alex.pth"


@needs_lpips
def test_released_lin_weights_load_strictly_and_match_the_registry_pin(crop):
    path = _shipped_lin_path()
    assert sha256_file(path) == get_spec(LIN_MODEL).sha256
    state = read_state_dict(path)
    assert sorted(state) == [f"lin{level}.model.1.weight" for level in range(5)]
    metric = LPIPS(lpips_backbone_state(), state)  # strict: every key used, no key missing
    assert metric.distance(crop, _noisy(crop, 0.05)) > 0


@needs_lpips
def test_same_numbers_as_the_reference_package(crop):
    """The `lpips` package with a random AlexNet trunk (no download) and its released lin layers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lpips

        torch.manual_seed(0)
        reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    state = reference.state_dict()
    trunk = {"features." + key.split(".", 3)[2] + "." + key.rsplit(".", 1)[1]: value  # net.slice1.0.weight
             for key, value in state.items() if key.startswith("net.slice")}
    lins = {key: value for key, value in state.items() if key.startswith("lin") and not key.startswith("lins.")}
    ours = LPIPS(trunk, lins)
    for sigma in (0.02, 0.1):
        other = _noisy(crop, sigma)
        tensors = [torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255 for x in (crop, other)]
        with torch.no_grad():
            expected = reference(*tensors, normalize=True).item()
        assert ours.distance(crop, other) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@needs_lpips
def test_lin_weights_resolve_from_the_installed_package_into_the_cache(tmp_path):
    first = resolve_weights(LIN_MODEL, tmp_path, sources=("pypi",))
    assert first.source.startswith("pypi:lpips==") and first.verified and first.path == tmp_path / "alex.pth"
    again = resolve_weights(LIN_MODEL, tmp_path, sources=("cache",))
    assert again.source == "cache" and again.verified and again.sha256 == first.sha256


@needs_lpips
def test_a_shipped_file_with_another_digest_is_not_copied(tmp_path):
    spec = ModelSpec(name="v00", arch="LPIPS", scale=1, filename="alex.pth", sha256=get_spec(LIN_MODEL).sha256,
                     pypi_file=PypiFile("lpips", "lpips", "weights/v0.0/alex.pth"))  # the old release
    with pytest.raises(WeightsError, match="not copied"):
        _Resolver(spec, tmp_path).from_pypi()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_package_names_the_pip_install(tmp_path):
    spec = ModelSpec(name="m", arch="LPIPS", scale=1, filename="m.pth",
                     pypi_file=PypiFile("no-such-dist", "raysr_no_such_module", "w.pth"))
    with pytest.raises(WeightsError, match="pip install no-such-dist"):
        _Resolver(spec, tmp_path).from_pypi()


def test_backbone_digest_prefix_is_checked(tmp_path):
    path = tmp_path / get_spec(BACKBONE_MODEL).filename
    torch.save(lpips_backbone_state(), path)  # a random AlexNet under the official name
    with pytest.raises(WeightsError, match="does not match the registry's 7be5be79…"):
        resolve_weights(BACKBONE_MODEL, tmp_path, sources=("cache",))
    prefix = sha256_file(path)[:8]
    spec = ModelSpec(name="x", arch="AlexNet", scale=1, filename=path.name, sha256_prefix=prefix)
    resolved = _Resolver(spec, tmp_path).from_cache()
    assert resolved.path == path and not resolved.verified  # a prefix is not a full pin


def test_from_registry_names_each_missing_file_and_the_fetch_command(tmp_path):
    with pytest.raises(WeightsError) as info:
        LPIPS.from_registry(tmp_path, sources=("cache",))
    message = str(info.value)
    assert "no alexnet-owt-7be5be79.pth" in message and "no alex.pth" in message
    assert "`raysr weights fetch alexnet_imagenet lpips_alex_v0.1`" in message


def test_from_registry_reads_both_resolved_files(tmp_path, monkeypatch, crop):
    """The wiring after the resolver (whose checks are tested above): both files read, provenance kept."""
    files = {BACKBONE_MODEL: lpips_backbone_state(), LIN_MODEL: lpips_lin_state()}
    resolved = {}
    for name, state in files.items():
        torch.save(state, tmp_path / f"{name}.pth")
        resolved[name] = ResolvedWeights(tmp_path / f"{name}.pth", sha256_file(tmp_path / f"{name}.pth"), "cache")
    seen = []
    monkeypatch.setattr(lpips_module, "resolve_weights",
                        lambda name, cache, sources: seen.append((name, sources)) or resolved[name])
    metric = LPIPS.from_registry(tmp_path)
    assert seen == [(BACKBONE_MODEL, ("cache", "pypi")), (LIN_MODEL, ("cache", "pypi"))]  # never "url"
    assert metric.weights == (resolved[BACKBONE_MODEL], resolved[LIN_MODEL])
    assert metric.distance(crop, _noisy(crop, 0.05)) == pytest.approx(
        LPIPS(lpips_backbone_state(), lpips_lin_state()).distance(crop, _noisy(crop, 0.05)))
