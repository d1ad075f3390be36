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

# The public names load on first use (PEP 562): a Ray worker that only reads, hashes or
# encodes files imports ``raysr.stages.read`` without paying for torch and spandrel.
_LAZY = {
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
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'raysr' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_LAZY[name]), name)


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
