import pytest
import torch

from raysr.engine.precision import (
    CompiledForward,
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


def _backend_without_lowering(graph_module, example_inputs):
    raise RuntimeError("this operator has no inductor lowering")


def test_compiled_forward_matches_eager():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
                                 torch.nn.Conv2d(8, 3, 3, padding=1)).eval()
    inputs = torch.rand(2, 3, 12, 10)
    compiled = CompiledForward(module)
    with torch.inference_mode():
        expected, got = module(inputs), compiled(inputs)
    assert compiled.failure is None
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_compile_failure_falls_back_to_eager_for_good():
    module = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
    compiled = CompiledForward(module, backend=_backend_without_lowering)
    inputs = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        first = compiled(inputs)
        assert compiled.failure and "no inductor lowering" in compiled.failure
        torch.testing.assert_close(first, module(inputs))
        torch.testing.assert_close(compiled(inputs), module(inputs))  # no second compile attempt
