"""The inference engine: precision policy, seamless tiling, one image at a time.

Never imports Ray: `raysr upscale` and the Ray actors share it unchanged.
"""

from raysr.engine.options import EngineOptions

_UPSCALER_NAMES = ("EngineError", "UpscaleResult", "Upscaler")


def __getattr__(name: str):
    # The upscaler (torch, spandrel) loads on first use: the job spec needs only EngineOptions.
    if name in _UPSCALER_NAMES:
        from raysr.engine import upscaler

        return getattr(upscaler, name)
    raise AttributeError(f"module 'raysr.engine' has no attribute {name!r}")

__all__ = ["EngineError", "EngineOptions", "UpscaleResult", "Upscaler"]
