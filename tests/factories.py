"""Small random-init instances of the real architectures, in the official key layouts.

Importable from any test (``tests/`` is on pytest's pythonpath).
"""

from __future__ import annotations

import torch


def rrdbnet_state(num_blocks: int = 1, num_feat: int = 16, num_grow: int = 32, scale: int = 4,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """A random RRDBNet state dict with the official Real-ESRGAN key names.

    spandrel reads the growth channels as 32, as in every released RRDBNet.
    """
    generator = torch.Generator().manual_seed(seed)
    in_ch = 3 * (16 // scale**2) if scale in (1, 2) else 3

    def conv(out_ch: int, in_ch_: int, name: str, state: dict) -> None:
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch_, 3, 3, generator=generator) * (0.5 / (in_ch_ * 9) ** 0.5)
        state[f"{name}.bias"] = torch.randn(out_ch, generator=generator) * 0.01

    state: dict[str, torch.Tensor] = {}
    conv(num_feat, in_ch, "conv_first", state)
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            for index in range(1, 6):
                out_ch = num_feat if index == 5 else num_grow
                conv(out_ch, num_feat + (index - 1) * num_grow, f"body.{block}.rdb{rdb}.conv{index}", state)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(num_feat, num_feat, name, state)
    conv(3, num_feat, "conv_last", state)
    # Bias the output towards mid-grey and give it some contrast, so outputs are
    # neither all clipped nor constant.
    state["conv_last.bias"] += 0.5
    state["conv_last.weight"] *= 30
    return state


def compact_state(num_conv: int = 4, num_feat: int = 16, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random SRVGGNetCompact state dict with the official key names (body.N)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index = 0
    in_ch = 3
    for _ in range(num_conv + 1):
        state[f"body.{index}.weight"] = torch.randn(num_feat, in_ch, 3, 3, generator=generator) * (1.0 / (in_ch * 9) ** 0.5)
        state[f"body.{index}.bias"] = torch.zeros(num_feat)
        state[f"body.{index + 1}.weight"] = torch.full((num_feat,), 0.25)
        index, in_ch = index + 2, num_feat
    out_ch = 3 * scale * scale
    state[f"body.{index}.weight"] = torch.randn(out_ch, num_feat, 3, 3, generator=generator) * (0.3 / (num_feat * 9) ** 0.5)
    state[f"body.{index}.bias"] = torch.zeros(out_ch)
    return state


def compact_receptive_radius(num_conv: int) -> int:
    """Input pixels each output pixel depends on, per side: one per 3×3 conv."""
    return num_conv + 2


def as_dtype(image_u8, dtype):
    """The same picture in another supported dtype: uint8 as is, uint16 ×257, float32 /255."""
    import numpy as np

    if dtype == np.uint8:
        return image_u8
    if dtype == np.uint16:
        return image_u8.astype(np.uint16) * 257
    return image_u8.astype(np.float32) / 255


def random_gfpgan_state() -> dict[str, torch.Tensor]:
    """A GFPGANv1Clean state dict with the official v1.3/v1.4 hyper-parameters, random values.

    The module is built on the meta device (no 10 s weight init) and given
    small random tensors: the net really runs, its faces are noise."""
    from spandrel.architectures.GFPGAN import GFPGAN

    with torch.device("meta"):
        module = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                        sft_half=True)
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(value.shape, generator=generator) * 0.05 for key, value in module.state_dict().items()}


def tiny_diffusion_pipeline():
    """An SD x4 upscaler with the real component classes and tiny random weights."""
    from diffusers import (
        AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    # CLIP BPE over printable ASCII, no merges: every character is a token.
    chars = [chr(code) for code in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=16, projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    ))
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, num_class_embeds=1000, norm_num_groups=8,
    )
    # Three VAE blocks → two downsamplings → vae_scale_factor 4, as in the real x4 VAE.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8, scaling_factor=0.08333,
    )
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )


# torchvision AlexNet.features: index -> (out, in, kernel) of each conv.
_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}


def lpips_backbone_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random AlexNet weights in torchvision's layout, plus a classifier key LPIPS must ignore."""
    generator = torch.Generator().manual_seed(seed)
    state = {"classifier.1.weight": torch.zeros(8, 8)}
    for index, (out, inp, k) in _CONVS.items():
        state[f"features.{index}.weight"] = torch.randn(out, inp, k, k, generator=generator) * (2 / (inp * k * k)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(out, generator=generator) * 0.01
    return state


def lpips_lin_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """Random non-negative lin layers (the released ones are non-negative too)."""
    generator = torch.Generator().manual_seed(seed)
    return {f"lin{level}.model.1.weight": torch.rand(1, channels, 1, 1, generator=generator) / channels
            for level, channels in enumerate((64, 192, 384, 256, 256))}


class NanOnMarkedTiles(torch.nn.Module):
    """Wraps a model: NaN output for windows holding a bright marker (> 0.999) while
    ``in_low_precision(x)`` holds, the way a half-precision overflow shows up."""

    def __init__(self, inner: torch.nn.Module, in_low_precision) -> None:
        super().__init__()
        self.inner, self.in_low_precision = inner, in_low_precision

    def forward(self, x):
        out = self.inner(x)
        if self.in_low_precision(x):
            marked = (x.amax(dim=(1, 2, 3)) > 0.999).view(-1, 1, 1, 1)
            out = torch.where(marked, torch.full_like(out, float("nan")), out)
        return out
