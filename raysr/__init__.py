"""raysr: restore image and video archives with super-resolution models as Ray jobs.

The public API is small; everything else is reached through its module.

Example:
    >>> from raysr import EngineOptions, Upscaler, load_model
    >>> upscaler = Upscaler(load_model("bicubic", scale=2), EngineOptions())
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raysr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from raysr.engine import EngineError, EngineOptions, Upscaler, UpscaleResult  # noqa: E402
from raysr.models.load import LoadedModel, load_model  # noqa: E402
from raysr.models.registry import REGISTRY, ModelSpec, get_spec  # noqa: E402
from raysr.weights import resolve_weights  # noqa: E402

__all__ = [
    "REGISTRY",
    "EngineError",
    "EngineOptions",
    "LoadedModel",
    "ModelSpec",
    "UpscaleResult",
    "Upscaler",
    "__version__",
    "get_spec",
    "load_model",
    "resolve_weights",
]
