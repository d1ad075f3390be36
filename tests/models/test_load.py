import pickle

import pytest
import torch

from factories import compact_state, rrdbnet_state
from raysr.models.load import ModelLoadError, _blend_states, load_model, read_state_dict
from raysr.weights import WeightsError, sha256_file


@pytest.mark.parametrize("layout", ["params_ema", "params", "bare"])
@pytest.mark.parametrize("factory, arch", [(rrdbnet_state, "ESRGAN"), (compact_state, "Compact")])
def test_official_checkpoint_layouts_load_by_path(save_state, layout, factory, arch):
    loaded = load_model(str(save_state(factory(), layout=layout)))
    assert loaded.arch == arch and loaded.scale == 4
    assert loaded.weights.sha256 == sha256_file(loaded.weights.path)
    assert not any(p.requires_grad for p in loaded.module.parameters())


def test_other_spandrel_architectures_load_by_path(tmp_path):
    from spandrel.architectures.SPAN import SPAN

    path = tmp_path / "span_x2.pth"
    torch.save(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2).state_dict(), path)
    loaded = load_model(str(path))
    assert loaded.arch == "SPAN" and loaded.scale == 2 and loaded.spec.name == "span_x2"


def test_pickled_code_is_never_executed(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"params": Exploit()}, handle)
    with pytest.raises(ModelLoadError, match="not a loadable weights file"):
        read_state_dict(path)


def test_truncated_file_is_refused(save_state):
    path = save_state(compact_state())
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelLoadError, match="not a loadable weights file"):
        load_model(str(path))


def test_not_a_model_is_refused_clearly(tmp_path):
    path = tmp_path / "random.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(ModelLoadError, match="does not recognise"):
        load_model(str(path))


def test_missing_path_names_it():
    with pytest.raises(WeightsError, match="weights file /nowhere/model.pth does not exist"):
        load_model("/nowhere/model.pth")


def test_misspelt_model_name_gets_the_registered_names_close_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file of that name here
    with pytest.raises(WeightsError, match=r"unknown model 'RealESRGAN_x4plux'.*Did you mean RealESRGAN_x4plus") as info:
        load_model("RealESRGAN_x4plux")
    assert "raysr weights list" in str(info.value)
    with pytest.raises(WeightsError) as info:
        load_model("zzqqxx")
    assert "Did you mean" not in str(info.value) and "neither a registered model nor a weights file" in str(info.value)


def test_blend_is_the_official_weight_interpolation():
    a, b = compact_state(seed=1), compact_state(seed=2)
    blended = _blend_states(a, b, 0.3)
    key = "body.0.weight"
    torch.testing.assert_close(blended[key], 0.3 * a[key] + 0.7 * b[key])


def test_denoise_strength_blends_registry_partner(tmp_path):
    general, weak = compact_state(seed=1), compact_state(seed=2)
    torch.save({"params": general}, tmp_path / "realesr-general-x4v3.pth")
    torch.save({"params": weak}, tmp_path / "realesr-general-wdn-x4v3.pth")
    # Registry digests pin the official files; these stand-ins are not them.
    with pytest.raises(WeightsError, match="does not match the registry"):
        load_model("realesr-general-x4v3", tmp_path, sources=("cache",), denoise_strength=0.5)


def test_codeformer_loads_through_the_extra_architectures(tmp_path):
    """CodeFormer is not in spandrel's core: raysr[extra-arches] adds it (non-commercial license)."""
    import torch
    from spandrel_extra_arches.architectures.CodeFormer.__arch.codeformer import CodeFormer

    with torch.device("meta"):  # the official shape, without 94 M parameters of init work
        module = CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, latent_size=256,
                            connect_list=["32", "64", "128", "256"], fix_modules=["quantize", "generator"])
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(value.shape, generator=generator) * 0.02 for key, value in module.state_dict().items()}
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": state}, path)
    loaded = load_model(str(path))
    assert loaded.arch == "CodeFormer" and loaded.scale == 1
