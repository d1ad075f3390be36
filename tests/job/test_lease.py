import json
import time

import pytest

from raysr.job.lease import Lease, LeaseHeldError
from s3_fixtures import s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401
from raysr.job.run import lease_uri, run_job
from raysr.job.spec import parse_spec


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path):
    uri = str(tmp_path / "out" / "_raysr" / "lease.json")
    first = Lease(uri, "run-1").acquire()
    with pytest.raises(LeaseHeldError, match="run run-1 on .* is processing this output"):
        Lease(uri, "run-2").acquire()
    first.release()
    Lease(uri, "run-2").acquire().release()


def test_an_expired_lease_of_a_dead_run_is_taken_over(tmp_path):
    uri = tmp_path / "lease.json"
    uri.write_text(json.dumps({"run_id": "dead", "host": "h", "pid": 1, "expires_at": time.time() - 1}))
    lease = Lease(str(uri), "alive").acquire()
    assert json.loads(uri.read_text())["run_id"] == "alive"
    lease.release()
    assert not uri.exists()


def test_renew_pushes_the_expiry(tmp_path):
    lease = Lease(str(tmp_path / "lease.json"), "r", ttl_s=100).acquire()
    before = lease.expires_at
    time.sleep(0.01)
    lease.renew(every_s=0)
    assert lease.expires_at > before
    assert json.loads((tmp_path / "lease.json").read_text())["expires_at"] == lease.expires_at


def test_run_job_fails_fast_when_the_output_is_leased(tmp_path):
    spec = parse_spec({"name": "j", "inputs": [str(tmp_path)], "output": {"path": str(tmp_path / "out")}, "model": "bicubic"})
    held = Lease(lease_uri(spec), "nightly-1").acquire()
    with pytest.raises(LeaseHeldError, match="nightly-1"):
        run_job(spec, progress=False)
    held.release()


def test_the_lease_works_on_s3(s3_bucket):
    uri = f"s3://{s3_bucket}/out/_raysr/lease.json"
    first = Lease(uri, "night-1").acquire()
    with pytest.raises(LeaseHeldError, match="night-1"):
        Lease(uri, "night-2").acquire()
    first.release()
    Lease(uri, "night-2").acquire().release()
