import pytest

from raysr.models.registry import REGISTRY, ModelSpec, _build_registry, get_spec

REQUIRED = [
    "RealESRGAN_x4plus", "RealESRNet_x4plus", "RealESRGAN_x4plus_anime_6B", "RealESRGAN_x2plus",
    "realesr-animevideov3", "realesr-general-x4v3", "realesr-general-wdn-x4v3", "bicubic", "lanczos",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_models_are_registered(name):
    spec = get_spec(name)
    assert spec.name == name and spec.scale >= 1 and spec.license


# Official files whose digest no two independent public sources agree on yet: the
# resolver records the digest it downloads, and `raysr weights verify` checks it from then on.
_UNPINNED = {"RestoreFormer", "CodeFormer", "stabilityai/stable-diffusion-x4-upscaler", "alexnet_imagenet"}
# Official files hosted outside GitHub. torchvision publishes only the first 8 hex digits of
# the sha256 (in the file name): the entry pins that prefix, which the resolver checks.
_OTHER_HOSTS = {"alexnet_imagenet": "https://download.pytorch.org/models/"}


def test_official_entries_pin_url_and_sha256():
    for spec in REGISTRY.values():
        if not spec.url:
            continue
        if spec.arch == "diffusers":  # a hub repository, resolved as a snapshot
            assert spec.url == f"https://huggingface.co/{spec.name}"
            continue
        assert spec.url.startswith(_OTHER_HOSTS.get(spec.name, "https://github.com/"))
        assert spec.filename and spec.url.endswith(spec.filename)
        if spec.name in _OTHER_HOSTS:
            assert spec.sha256_prefix and spec.filename.endswith(f"-{spec.sha256_prefix}.pth")
        if spec.name in _UNPINNED:
            assert spec.sha256 is None
        else:
            assert spec.sha256 and len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="RealESRGAN_x4plus"):
        get_spec("RealESRGAN_x8")


def test_duplicates_and_dangling_partners_are_refused():
    spec = ModelSpec(name="a", arch="Compact", scale=4)
    with pytest.raises(ValueError, match="duplicate"):
        _build_registry((spec, spec))
    with pytest.raises(ValueError, match="unknown"):
        _build_registry((ModelSpec(name="b", arch="Compact", scale=4, blend_with="zz"),))
