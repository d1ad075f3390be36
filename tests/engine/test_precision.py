import pytest
import torch

from raysr.engine.precision import (
    PrecisionError,
    cpu_supports_bf16,
    is_out_of_memory,
    pick_device,
    plan_precision,
)

CPU = torch.device("cpu")


def test_auto_on_cpu_uses_bf16_autocast_when_the_cpu_has_it():
    plan = plan_precision("auto", CPU)
    if cpu_supports_bf16():
        assert plan.name == "bf16" and plan.autocast_dtype == torch.bfloat16
        assert plan.weight_dtype == torch.float32 and plan.channels_last
    else:
        assert plan.name == "fp32"


def test_fp32_is_the_reference_path():
    plan = plan_precision("fp32", CPU)
    assert plan.name == "fp32" and plan.autocast_dtype is None and not plan.check_finite


def test_auto_falls_back_to_fp32_when_the_architecture_has_no_bf16():
    assert plan_precision("auto", CPU, supports_bf16=False).name == "fp32"


@pytest.mark.parametrize(
    "requested, kwargs, message",
    [
        ("fp16", {}, "fp16 runs only on CUDA"),
        ("bf16", {"supports_bf16": False}, "does not support bf16"),
        ("int8", {}, "precision must be one of"),
    ],
)
def test_unsupported_combinations_say_what_to_use(requested, kwargs, message):
    with pytest.raises(PrecisionError, match=message):
        plan_precision(requested, CPU, **kwargs)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(PrecisionError, match="no CUDA GPU"):
            pick_device("cuda")


def test_out_of_memory_detection():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="needs a CPU with native bf16")
def test_bf16_autocast_really_computes_in_bf16():
    conv = torch.nn.Conv2d(3, 3, 3)
    plan = plan_precision("bf16", CPU)
    with torch.inference_mode(), plan.autocast():
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
