import json
import logging
import subprocess
import sys
import time

import cv2
import pytest

from raysr.job.lease import Lease, LeaseHeldError, _machine, _started_ticks
from s3_fixtures import s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401
from raysr.job.run import lease_uri, run_job
from raysr.job.spec import parse_spec


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path):
    uri = str(tmp_path / "out" / "_raysr" / "lease.json")
    first = Lease(uri, "run-1").acquire()
    assert first.took_over_from is None
    with pytest.raises(LeaseHeldError, match="run run-1 on .* is processing this output"):
        Lease(uri, "run-2").acquire()
    first.release()
    Lease(uri, "run-2").acquire().release()


def test_an_expired_lease_of_a_dead_run_is_taken_over(tmp_path):
    uri = tmp_path / "lease.json"
    uri.write_text(json.dumps({"run_id": "dead", "host": "h", "pid": 1, "expires_at": time.time() - 1}))
    lease = Lease(str(uri), "alive").acquire()
    assert json.loads(uri.read_text())["run_id"] == "alive" and lease.took_over_from == "dead"
    lease.release()
    assert not uri.exists()


def _unexpired_lease_of(uri, pid: int, **fields) -> None:
    holder = {"run_id": "killed", **_machine(), "pid": pid, "pid_started": _started_ticks(pid),
              "expires_at": time.time() + 600, **fields}
    uri.write_text(json.dumps(holder))


@pytest.fixture
def exited_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def running_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def test_a_killed_run_on_this_machine_is_taken_over_before_its_lease_expires(tmp_path, exited_pid, caplog):
    uri = tmp_path / "lease.json"
    _unexpired_lease_of(uri, exited_pid, pid_started=123)
    with caplog.at_level(logging.WARNING, logger="raysr.job.lease"):
        lease = Lease(str(uri), "resume").acquire()
    assert json.loads(uri.read_text())["run_id"] == "resume"
    assert "run killed" in caplog.text and "taking it over" in caplog.text
    lease.release()


def test_a_live_holder_on_this_machine_keeps_its_lease(tmp_path, running_pid):
    uri = tmp_path / "lease.json"
    _unexpired_lease_of(uri, running_pid)
    with pytest.raises(LeaseHeldError, match="run killed on .* is processing this output"):
        Lease(str(uri), "second").acquire()
    assert json.loads(uri.read_text())["run_id"] == "killed"


def test_a_reused_pid_does_not_keep_a_dead_runs_lease(tmp_path, running_pid):
    # The pid runs, but a process started at another time than the holder: the holder is gone.
    uri = tmp_path / "lease.json"
    _unexpired_lease_of(uri, running_pid, pid_started=_started_ticks(running_pid) + 1)
    Lease(str(uri), "resume").acquire().release()


@pytest.mark.parametrize("elsewhere", [{"host": "another-node"}, {"boot_id": "0-before-a-reboot"},
                                       {"pid_ns": "pid:[1]"}, {"boot_id": None}])
def test_a_holder_this_process_cannot_see_is_trusted_until_expiry(tmp_path, exited_pid, elsewhere):
    # Its pid means nothing here: another machine, another boot, another container's pids.
    uri = tmp_path / "lease.json"
    _unexpired_lease_of(uri, exited_pid, **elsewhere)
    with pytest.raises(LeaseHeldError, match="expires at"):
        Lease(str(uri), "second").acquire()


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


def test_a_run_that_takes_over_a_dead_runs_lease_removes_its_partial_files(ray_cluster, tmp_path, photo,
                                                                            exited_pid, caplog):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "a.png"), photo[:32, :32])
    partial_file = out / "sub" / ".b.png.k3j2x9.raysr-tmp"
    partial_segment = out / "_raysr" / "segments" / "v1" / ".raysr-segment-q8a" / "seg.mkv"
    for path in (partial_file, partial_segment):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half")
    spec = parse_spec({"name": "j", "inputs": [str(inputs)], "output": {"path": str(out)}, "model": "bicubic"})
    (out / "_raysr" / "lease.json").write_text(json.dumps(
        {"run_id": "killed", **_machine(), "pid": exited_pid, "pid_started": 1, "expires_at": time.time() + 600}))
    with caplog.at_level(logging.WARNING, logger="raysr.job.run"):
        report = run_job(spec, progress=False)
    assert report.counts["ok"] == 1
    assert not partial_file.exists() and not partial_segment.parent.exists()
    assert "removed 2 partial files" in caplog.text and "by run killed" in caplog.text
    assert (out / "sub").is_dir() and (out / "_raysr" / "segments" / "v1").is_dir()  # only the partials go


def test_the_lease_works_on_s3(s3_bucket):
    uri = f"s3://{s3_bucket}/out/_raysr/lease.json"
    first = Lease(uri, "night-1").acquire()
    with pytest.raises(LeaseHeldError, match="night-1"):
        Lease(uri, "night-2").acquire()
    first.release()
    Lease(uri, "night-2").acquire().release()


def test_a_renewal_that_fails_is_logged_and_tried_again_not_fatal(tmp_path, caplog):
    folder = tmp_path / "_raysr"
    lease = Lease(str(folder / "lease.json"), "r", ttl_s=100).acquire()
    expires = lease.expires_at
    (folder / "lease.json").unlink()
    folder.rmdir()
    folder.write_text("a file where the lease's folder was: every write under it fails")
    with caplog.at_level(logging.WARNING, logger="raysr.job.lease"):
        lease.renew(every_s=0)
    assert "could not renew the lease" in caplog.text and lease.expires_at == expires
    folder.unlink()
    folder.mkdir()
    lease.renew(every_s=0)  # the store is back: renewed
    assert json.loads((folder / "lease.json").read_text())["expires_at"] == lease.expires_at > expires
