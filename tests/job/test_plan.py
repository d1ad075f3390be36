import pytest

from raysr.job.plan import PlanError, check_chain
from raysr.stages.color import ColorStage
from raysr.stages.read import ReadBytesStage
from raysr.stages.upscale import UpscaleStage
from raysr.stages.write import WriteStage


def test_the_job_chain_fits_together():
    check_chain([ReadBytesStage(), UpscaleStage, ColorStage({}), WriteStage("png", 95)],
                ("item_id", "input_uri", "input_sha256", "relative", "model", "height", "output_uri"))


def test_a_stage_reading_a_column_nobody_wrote_is_refused_before_any_work():
    with pytest.raises(PlanError, match=r"UpscaleStage reads \['data'\]"):
        check_chain([UpscaleStage, WriteStage("png", 95)], ("input_uri",))
