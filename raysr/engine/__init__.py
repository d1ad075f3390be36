"""The inference engine: precision policy, seamless tiling, one image at a time.

Never imports Ray: `raysr upscale` and the Ray actors share it unchanged.
"""

from raysr.engine.options import EngineOptions
from raysr.engine.upscaler import EngineError, Upscaler, UpscaleResult

__all__ = ["EngineError", "EngineOptions", "UpscaleResult", "Upscaler"]
