import pytest

from raysr.job.plan import PlanError, check_chain
from raysr.stages.color import ColorStage
from raysr.stages.read import ReadBytesStage
from raysr.stages.upscale import UpscaleStage
from raysr.stages.write import WriteStage


def test_the_job_chain_fits_together():
    check_chain([ReadBytesStage(), UpscaleStage, ColorStage({}), WriteStage("png", 95)],
                ("item_id", "input_uri", "input_version", "input_sha256", "relative", "model", "height", "output_uri"))


def test_a_stage_reading_a_column_nobody_wrote_is_refused_before_any_work():
    with pytest.raises(PlanError, match=r"UpscaleStage reads \['data'\]"):
        check_chain([UpscaleStage, WriteStage("png", 95)], ("input_uri", "input_version"))


def test_model_actors_get_one_cpu_beside_a_gpu_and_the_cores_without_one():
    import os

    from raysr.job.plan import cpus_per_actor
    from raysr.job.spec import parse_spec

    spec = parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}})
    assert cpus_per_actor(spec, num_gpus=1) == 1
    assert 1 <= cpus_per_actor(spec, num_gpus=0) <= (os.cpu_count() or 1)
    pinned = parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}, "resources": {"cpus_per_actor": 3}})
    assert cpus_per_actor(pinned, num_gpus=0) == 3 and cpus_per_actor(pinned, num_gpus=1) == 3
