"""`raysr submit|status|logs|stop` against a real Ray head (its own processes, token auth on).

The head runs in its own session and temp dir on loopback ports, so it never touches the
in-process cluster other tests share; it is stopped by signalling only what it started.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pytest
import requests
from ray.runtime_env import RuntimeEnv

from raysr.cli import build_parser, main
from raysr.job.spec import parse_spec
from raysr.manifest import latest_rows, read_manifest
from raysr.submit import (SPEC_ENV_VAR, SubmitError, build_runtime_env, default_pip_spec, find_auth_token, job_logs,
                          relative_local_paths, submit_job, wait_for_job)

START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_pids(session: int) -> list[int]:
    """Live (not zombie) processes in the head's session, read from Linux /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            state, _ppid, _group, sid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(sid) == session and state != "Z":
            pids.append(int(entry.name))
    return pids


def _stop_head(head: subprocess.Popen) -> None:
    """Stop every process of the head's own session, by id: SIGTERM, then SIGKILL what is left after 2 s
    (a Ray head that ran a job often does not finish shutting down on SIGTERM).

    Not `ray stop`: it kills every Ray process on the machine, the other tests' cluster included.
    """
    for sig, grace_s in ((signal.SIGTERM, 2), (signal.SIGKILL, 5)):
        for pid in _session_pids(head.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while _session_pids(head.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    head.wait(timeout=5)


@pytest.fixture(scope="module")
def ray_head():
    """(address, token) of a real one-node Ray head with its dashboard job server."""
    missing = [name for name in ("aiohttp", "aiohttp_cors", "opencensus") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"Ray's job server needs ray[default] ({', '.join(missing)} missing): pip install -e '.[cluster]'")
    temp_dir = tempfile.mkdtemp(prefix="rsr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(32)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,  # token auth kept on, with a token of its own
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")  # `raysr` for the job
    dashboard = _free_port()
    ports = {name: _free_port() for name in ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                             "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
                                             "object-manager-port", "ray-client-server-port")}
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=4", "--num-gpus=0",
               "--disable-usage-stats", f"--temp-dir={temp_dir}", *(f"--{name}={port}" for name, port in ports.items())]
    log = Path(temp_dir) / "head.log"
    head = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            try:
                if requests.get(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"},
                                timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if head.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                pytest.skip(f"the Ray head's job server did not come up in {START_TIMEOUT_S} s "
                            f"(ray start exit code {head.poll()}); its log ends:\n{tail}")
            time.sleep(0.5)
        yield address, token
    finally:
        _stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def with_token(ray_head, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head[1])
    return ray_head[0]


@pytest.fixture
def job_file(tmp_path, photo):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, (top, left) in enumerate([(0, 0), (100, 200), (300, 50)]):
        cv2.imwrite(str(inputs / f"p{index}.png"), cv2.cvtColor(photo[top:top + 24, left:left + 32], cv2.COLOR_RGB2BGR))
    path = tmp_path / "job.yaml"
    path.write_text(f"name: submitted\ninputs: [{inputs}]\noutput: {{path: {tmp_path / 'out'}}}\nmodel: bicubic\n"
                    "resources: {cpus_per_actor: 0.5, read_cpus: 0.25}\n")
    return path


# -- without a cluster ---------------------------------------------------------


def test_default_runtime_env_ships_the_spec_and_installs_this_raysr(tmp_path, job_file):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    runtime_env, entry = build_runtime_env(job_file, workdir, None, None, install=True)
    assert runtime_env == {"working_dir": str(workdir), "pip": [default_pip_spec()]}
    RuntimeEnv(**runtime_env)  # Ray accepts it
    assert (workdir / "job.yaml").read_text() == job_file.read_text()
    assert entry == "raysr run job.yaml --address auto"
    runtime_env, _ = build_runtime_env(job_file, workdir, ["raysr[video]==9.9"], None, install=True)
    assert runtime_env["pip"] == ["raysr[video]==9.9"]
    assert "pip" not in build_runtime_env(job_file, workdir, None, None, install=False)[0]


def test_a_local_build_is_not_offered_to_pip(tmp_path, job_file, monkeypatch):
    monkeypatch.setattr("raysr.submit.__version__", "0.1.0+g1234")
    (tmp_path / "wd").mkdir()
    with pytest.raises(SubmitError, match="--runtime-env-pip"):
        build_runtime_env(job_file, tmp_path / "wd", None, None, install=True)
    assert build_runtime_env(job_file, tmp_path / "wd", ["raysr @ https://x/r.whl"], None, install=True)[0]["pip"]


def test_image_runtime_env_carries_the_spec_in_an_env_var_the_entrypoint_writes_out(tmp_path, job_file):
    runtime_env, entry = build_runtime_env(job_file, tmp_path, None, "ghcr.io/x/raysr:1", install=True)
    assert set(runtime_env) == {"image_uri", "env_vars"}
    RuntimeEnv(**runtime_env)  # Ray refuses working_dir or pip beside image_uri
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "raysr").write_text('#!/bin/sh\necho "$@"; cat "$2"\n')
    (fake_bin / "raysr").chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", SPEC_ENV_VAR: runtime_env["env_vars"][SPEC_ENV_VAR]}
    shown = subprocess.run(["/bin/sh", "-c", entry], env=env, capture_output=True, text=True, check=True).stdout
    assert shown.startswith("run /tmp/raysr-") and "--address auto" in shown
    assert job_file.read_text() in shown
    Path(shown.split()[1]).unlink()


def test_image_excludes_pip_and_no_install(job_file):
    with pytest.raises(SubmitError, match="--image already carries raysr"):
        submit_job(job_file, "http://127.0.0.1:1", image="img", install=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["submit", str(job_file), "--image", "img", "--no-install"])


def test_auth_token_is_found_where_ray_looks(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_auth_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert find_auth_token() == ("home-token", str(tmp_path / ".ray" / "auth_token"))
    (tmp_path / "t").write_text("file-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert find_auth_token()[0] == "file-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert find_auth_token() == ("env-token", "RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(SubmitError, match="RAY_AUTH_TOKEN_PATH"):
        find_auth_token()


def test_relative_local_paths_are_reported():
    spec = parse_spec({"name": "x", "inputs": ["scans/", "s3://b/p/", "/abs/in"], "output": {"path": "out"}})
    assert relative_local_paths(spec) == ["scans/", "out"]


def test_no_address_says_how_to_give_one(job_file, monkeypatch, capsys):
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert main(["status", "some-job"]) == 2
    assert "--address http://HEAD:8265" in capsys.readouterr().err


# -- against the real head -----------------------------------------------------


def test_submit_runs_the_job_on_the_cluster(with_token, job_file, tmp_path, capsys):
    assert main(["submit", str(job_file), "--address", with_token, "--no-install"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("raysr-submitted-")
    state = wait_for_job(job_id, with_token, timeout_s=JOB_TIMEOUT_S, poll_s=0.5)
    assert state.status == "SUCCEEDED", job_logs(job_id, with_token)
    assert state.entrypoint == "raysr run job.yaml --address auto"

    rows = latest_rows(read_manifest(str(tmp_path / "out" / "_raysr" / "manifest"))).to_pylist()
    assert [row["status"] for row in rows] == ["ok"] * 3
    for row in rows:
        assert Path(row["output_uri"].removeprefix("file://")).stat().st_size == row["output_size"]
        assert (row["output_width"], row["output_height"]) == (128, 96)

    assert main(["status", job_id, "--address", with_token]) == 0
    assert f"{job_id}: SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", job_id, "--address", with_token]) == 0
    assert "3 inputs: " in capsys.readouterr().out
    assert main(["logs", job_id, "--address", with_token, "--follow"]) == 0  # ends: the job has ended
    assert "3 inputs: " in capsys.readouterr().out


def test_stop_a_running_job(with_token, job_file, capsys):
    job_id = submit_job(job_file, with_token, install=False)
    assert main(["stop", job_id, "--address", with_token]) == 0
    assert "stop requested" in capsys.readouterr().out
    assert wait_for_job(job_id, with_token, timeout_s=60, poll_s=0.5).status == "STOPPED"


def test_unknown_job_and_missing_or_wrong_token_are_one_line_errors(ray_head, tmp_path, monkeypatch, capsys):
    address, token = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    assert main(["status", "no-such-job", "--address", address]) == 2
    assert "no job 'no-such-job'" in capsys.readouterr().err

    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["status", "no-such-job", "--address", address]) == 2
    assert "refused the token from RAY_AUTH_TOKEN" in capsys.readouterr().err

    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    assert main(["status", "no-such-job", "--address", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "none was found" in err and "RAY_AUTH_TOKEN" in err
