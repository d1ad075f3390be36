"""The inference engine: precision policy, seamless tiling, one image at a time.

Never imports Ray: `raysr upscale` and the Ray actors share it unchanged.
"""

from raysr._lazy import lazy_attributes
from raysr.engine.options import EngineOptions

# The upscaler (torch, spandrel) loads on first use: the job spec needs only EngineOptions.
__getattr__ = lazy_attributes(__name__, dict.fromkeys(("EngineError", "UpscaleResult", "Upscaler"),
                                                     "raysr.engine.upscaler"))

__all__ = ["EngineError", "EngineOptions", "UpscaleResult", "Upscaler"]
