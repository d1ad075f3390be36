"""Diffusion upscalers (Stable Diffusion x4 through diffusers); needs ``raysr[diffusion]``.

Importing this package does not import diffusers: that happens when a pipeline is loaded.
"""

from raysr.diffusion.pipeline import SD_X4_UPSCALER, DiffusionUpscaler, load_diffusion_pipeline

__all__ = ["SD_X4_UPSCALER", "DiffusionUpscaler", "load_diffusion_pipeline"]
