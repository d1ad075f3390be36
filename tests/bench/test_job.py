"""`raysr run` as the benches run it (:mod:`raysr.bench.job`); the runs themselves are exercised
by the smoke benches (tests/bench/test_items.py, test_scaling.py, test_pipeline.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_bench_driver_imports_what_the_raysr_run_driver_does():
    # The child that runs the job (`from raysr.bench.job import drive_run`) reports its peak RSS
    # as the driver's: with torch loaded beside it (~0.6 GB, from the pipeline bench's model
    # code) the figure was the bench's.
    code = ("import sys, raysr.bench.job, raysr.job.run, raysr.job.plan; "
            "heavy = {'torch', 'spandrel'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
