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


@pytest.mark.parametrize("items, slots, rows", [
    (20_000, 8, 500),  # a laptop's resume: 40 blocks, not 2000 ten-row tasks
    (1_000, 8, 32),  # four rounds of blocks per slot
    (10, 8, 8),  # never fewer rows than a task is worth
    (1_000_000, 2000, 125),  # a big cluster: every slot busy
])
def test_probe_blocks_are_a_few_rounds_per_task_slot(items, slots, rows):
    from raysr.job.plan import probe_rows_per_block

    assert probe_rows_per_block(items, slots) == rows


def test_the_driver_plans_without_torch():
    # `raysr run`'s driver lists, probes, plans and writes the manifest; torch and spandrel
    # (~0.5 GB and seconds) load only in the model actors, and weights resolve without them.
    import subprocess
    import sys

    code = ("import sys, raysr.cli, raysr.job.run, raysr.job.plan, raysr.weights.resolve; "
            "heavy = {'torch', 'spandrel'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# A driver unwinding for longer than abseil's 3 s alarm (a big manifest part to S3, a lease to
# release) was killed by SIGABRT: exit 134 and no "unwound".
@pytest.mark.parametrize("own_handler, exit_code", [(False, 15), (True, 143)],
                         ids=["ray's handler", "the caller's handler"])
def test_sigterm_unwinds_a_driver_that_started_ray_without_aborting_it(own_handler, exit_code):
    import subprocess
    import sys

    code = f"""
import os, signal, sys, time
if {own_handler}:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
from raysr.job.plan import init_ray
init_ray(None)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
finally:
    time.sleep(5)
    print("unwound", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (exit_code, "unwound"), done.stderr[-2000:]


@pytest.mark.parametrize("items, actors, batch, rows", [
    (12, 1, 1, 1),  # a laptop's dozen photos: one a block, outputs stream
    (3_000, 1, 1, 47),  # many small items: 64 blocks of 47 rows, not 2000 of 2
    (100_000, 1, 1, 64),  # at most 64 rows a block
    (1_000, 8, 1, 2),  # eight GPUs: 64 blocks each
    (100, 4, 8, 8),  # never less than one model batch
])
def test_process_blocks_grow_past_64_per_actor(items, actors, batch, rows):
    from raysr.job.plan import process_rows_per_block

    assert process_rows_per_block(items, actors, batch) == rows


def _spec(**resources):
    from raysr.job.spec import parse_spec

    return parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}, "resources": resources})


def test_nothing_pending_starts_no_actor(caplog):
    # A resume that finds every item done: no pool, no "model actors" line, no Ray call at all.
    import logging

    import pyarrow as pa

    from raysr.job.plan import process

    with caplog.at_level(logging.INFO, logger="raysr"):
        assert list(process({"photo": pa.table({"item_id": pa.array([], pa.string())})}, _spec())) == []
    assert "model actors" not in caplog.text


def test_task_pools_are_capped_at_two_per_core_only_on_the_ray_raysr_started(monkeypatch):
    import os

    from raysr.job import plan

    assert plan._task_pool(1000) is None  # a cluster (the session's): Ray Data's own default
    monkeypatch.setattr(plan, "_embedded_cores", os.cpu_count())
    assert plan._task_pool(1000).size == 2 * os.cpu_count()


def test_a_task_pool_is_no_larger_than_its_input_blocks(ray_cluster, monkeypatch):
    """Ray Data warns when a pool may run more tasks than it has inputs (the demo's one video
    block printed that warning); the pool follows the block count down to one task."""
    import warnings

    import pyarrow as pa
    import ray

    from raysr.job import plan

    monkeypatch.setattr(plan, "_embedded_cores", 2)
    assert plan._task_pool(1).size == 1
    assert plan._task_pool(3).size == 3
    assert plan._task_pool(0).size == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = ray.data.from_arrow([pa.table({"x": [1]})]).map_batches(
            lambda batch: batch, batch_format="pyarrow", compute=plan._task_pool(1)).take_all()
    assert rows == [{"x": 1}]
    assert not [w for w in caught if "maximum number of concurrent tasks" in str(w.message)]
