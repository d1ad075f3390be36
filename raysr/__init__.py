"""raysr: restore image and video archives with super-resolution models as Ray jobs.

The public API is small; everything else is reached through its module.

Example:
    >>> from raysr import EngineOptions, Upscaler, load_model
    >>> upscaler = Upscaler(load_model("bicubic", scale=2), EngineOptions())
"""

from importlib.metadata import PackageNotFoundError, version

from raysr._lazy import lazy_attributes

try:
    __version__ = version("raysr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

# The public names load on first use: see raysr/_lazy.py for why.
__getattr__ = lazy_attributes(__name__, {
    "EngineError": "raysr.engine.upscaler",
    "EngineOptions": "raysr.engine.options",
    "UpscaleResult": "raysr.engine.upscaler",
    "Upscaler": "raysr.engine.upscaler",
    "LoadedModel": "raysr.models.load",
    "load_model": "raysr.models.load",
    "REGISTRY": "raysr.models.registry",
    "ModelSpec": "raysr.models.registry",
    "get_spec": "raysr.models.registry",
    "resolve_weights": "raysr.weights",
})

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
