"""Device and precision policy: the one place that decides how a model runs.

``auto`` means:
- CUDA: FP16 weights and activations, every tile's output checked for NaN/inf,
  a non-finite tile rerun in FP32 (reported as a precision fallback).
- CPU with native bfloat16 (avx512_bf16 or AMX): bfloat16 autocast with
  channels_last memory. Measured here on RRDBNet x4plus, 128² input: FP32 NCHW
  3.81 s vs bf16 + channels_last 1.58 s, 53.7 dB PSNR against FP32 output.
- other CPUs: FP32.

``fp32`` always gives the reference path. Every CUDA-only line lives in this
module so it can be reviewed in one sitting.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_LOG = logging.getLogger(__name__)


class PrecisionError(ValueError):
    """The requested precision cannot run on this device or model."""


@dataclass(frozen=True)
class PrecisionPlan:
    """How to run one model on one device.

    Attributes:
        name: ``fp32``, ``fp16`` or ``bf16``: recorded per item in the manifest.
        device: where the module and tiles live.
        weight_dtype: dtype the module's parameters are cast to.
        autocast_dtype: dtype for ``torch.autocast``; ``None`` for none.
        channels_last: use NHWC memory format (faster convs on CPU and tensor cores).
        check_finite: rerun non-finite tiles in FP32.
    """

    name: str
    device: torch.device
    weight_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    channels_last: bool
    check_finite: bool

    @property
    def input_dtype(self) -> torch.dtype:
        return self.weight_dtype

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when a GPU is visible (Ray sets CUDA_VISIBLE_DEVICES per actor), else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PrecisionError(f"device {device!r} requested but no CUDA GPU is visible")
    return resolved


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (avx512_bf16 or AMX)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = set(cpuinfo.read_text(errors="replace").split())
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def plan_precision(
    requested: str, device: torch.device, supports_fp16: bool = True, supports_bf16: bool = True
) -> PrecisionPlan:
    """Turn a requested precision into a concrete plan for ``device``.

    Raises:
        PrecisionError: for combinations that cannot run (fp16 on CPU, bf16 on a
            GPU without it, a precision the architecture does not support).
    """
    if requested not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    on_cuda = device.type == "cuda"
    if requested == "auto":
        if on_cuda and supports_fp16:
            requested = "fp16"
        elif not on_cuda and supports_bf16 and cpu_supports_bf16():
            requested = "bf16"
        else:
            requested = "fp32"
    if requested == "fp32":
        return PrecisionPlan("fp32", device, torch.float32, None, not on_cuda, False)
    if requested == "fp16":
        if not on_cuda:
            raise PrecisionError(
                "fp16 runs only on CUDA; on CPU use --precision bf16 (native bf16 CPUs) or fp32"
            )
        if not supports_fp16:
            raise PrecisionError("this architecture does not support fp16; use fp32")
        return PrecisionPlan("fp16", device, torch.float16, None, True, True)
    # bf16
    if not supports_bf16:
        raise PrecisionError("this architecture does not support bf16; use fp32")
    if on_cuda:
        if not torch.cuda.is_bf16_supported():
            raise PrecisionError("this GPU has no bf16 support; use fp16 or fp32")
        return PrecisionPlan("bf16", device, torch.bfloat16, None, True, True)
    if not cpu_supports_bf16():
        raise PrecisionError(
            "this CPU has no native bf16 (avx512_bf16/AMX): bf16 would be slower than fp32; use fp32"
        )
    # Weights stay fp32: autocast casts per op, which is what oneDNN's bf16 kernels want.
    return PrecisionPlan("bf16", device, torch.float32, torch.bfloat16, True, True)


def prepare_module(module: torch.nn.Module, plan: PrecisionPlan) -> torch.nn.Module:
    """Move a module to the plan's device, dtype and memory format (in place; returns it)."""
    module = module.to(device=plan.device, dtype=plan.weight_dtype)
    if plan.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module.eval()


class CompiledForward:
    """``torch.compile`` of a prepared module, falling back to the eager module for good
    when compilation fails (no C++ compiler, an operator inductor cannot lower).

    Shapes are static (``dynamic=False``): the engine's windows have one size per image
    and tile setting, so a fixed ``tile`` compiles once; each new window shape compiles
    again (up to torch's recompile limit, after which torch itself runs eagerly).
    CUDA graphs are not used: at the window sizes that matter kernels run for
    milliseconds, so launch overhead is small, and graphs would pin a memory pool per shape.

    Attributes:
        eager: the module as prepared by :func:`prepare_module`.
        failure: why compilation was given up, or ``None``.
    """

    def __init__(self, module: torch.nn.Module, backend: str | Callable = "inductor", mode: str | None = None) -> None:
        self.eager = module
        self.failure: str | None = None
        # mode: torch.compile's (None: "default"); `raysr bench forward --compile-mode` tries
        # others (max-autotune-no-cudagraphs) before the engine adopts one.
        self._compiled = torch.compile(module, dynamic=False, backend=backend, mode=mode)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.failure is None:
            try:
                return self._compiled(inputs)
            except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly
                if is_out_of_memory(error):
                    raise
                self.failure = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
                _LOG.warning("torch.compile failed, running eagerly from now on (%s)", self.failure)
        return self.eager(inputs)


def fp32_twin(module: torch.nn.Module, plan: PrecisionPlan) -> torch.nn.Module:
    """An FP32 copy of ``module`` on the same device, for rerunning non-finite tiles."""
    twin = copy.deepcopy(module).to(dtype=torch.float32)
    return twin.to(memory_format=torch.channels_last) if plan.channels_last else twin


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA OOM and for CPU allocator failures."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def free_memory_bytes(device: torch.device) -> int:
    """Memory the engine may plan with: free GPU memory, or available host RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4 << 30


def configure_determinism(device: torch.device) -> None:
    """Same input and settings → same output: fixed cuDNN algorithms on CUDA."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
