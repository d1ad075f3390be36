"""`raysr submit|status|logs|stop`: run a job spec on a remote Ray cluster through Ray's job API.

The spec is validated here first, then shipped with the job:

- default: a ``working_dir`` holding only the spec file, plus ``pip: [raysr==<this version>]``
  (``--runtime-env-pip`` replaces the pip list; ``--no-install`` ships no pip list, for clusters
  whose image already has raysr);
- ``--image``: Ray's ``image_uri`` runtime env. Ray refuses ``working_dir`` and ``pip`` beside
  ``image_uri``, so the spec travels as the env var ``RAYSR_JOB_SPEC_YAML`` and the entrypoint
  writes it to a file first.

The entrypoint is ``raysr run <spec> --address auto`` on the cluster.

Token authentication (on by default in Ray 2.60) is kept on: every request carries
``Authorization: Bearer <token>``, the token looked up where Ray looks
(:func:`find_auth_token`). Ray's own client adds the header only when this process runs with
``RAY_AUTH_MODE=token``; raysr sends it whenever a token is found, so a user needs no
extra variable.

Example::

    raysr submit jobs/photo-archive-s3.yaml --address http://head:8265 --wait
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raysr import __version__
from raysr.job.spec import JobSpec, load_spec

SPEC_ENV_VAR = "RAYSR_JOB_SPEC_YAML"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(RuntimeError):
    """The cluster could not be reached, refused us, or does not know the job; the message says the fix."""


@dataclass(frozen=True)
class JobState:
    """What the cluster knows about one submitted job."""

    job_id: str
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str
    entrypoint: str
    driver_exit_code: int | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def default_pip_spec() -> str:
    """The pip requirement that installs this raysr on the cluster: ``raysr==<version>``."""
    return f"raysr=={__version__}"


def find_auth_token() -> tuple[str, str] | None:
    """The Ray auth token and where it came from, in Ray's own order, or None.

    1. ``RAY_AUTH_TOKEN`` (the token itself), 2. ``RAY_AUTH_TOKEN_PATH`` (a file holding it),
    3. ``~/.ray/auth_token`` (what ``ray get-auth-token --generate`` writes).
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path_var = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path_var:
        path = Path(path_var).expanduser()
        token = path.read_text().strip() if path.is_file() else ""
        if not token:
            raise SubmitError(f"RAY_AUTH_TOKEN_PATH={path_var} is not a file holding a token; "
                              "point it at the cluster's token file or unset it")
        return token, str(path)
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file() and default.read_text().strip():
        return default.read_text().strip(), str(default)
    return None


def relative_local_paths(spec: JobSpec) -> list[str]:
    """Spec paths that are local and relative: on the cluster they resolve inside the job's
    working dir, which holds only the spec. Callers warn about them."""
    paths = [*spec.inputs, spec.output.path, spec.manifest, spec.weights_dir, spec.stages.reference_dir]
    return [path for path in paths if path and "://" not in path and not os.path.isabs(path)]


def _client(address: str | None):
    """A JobSubmissionClient for ``address`` (else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``)."""
    for module in ("requests", "aiohttp"):
        if importlib.util.find_spec(module) is None:
            raise SubmitError(f"`raysr submit` needs Ray's job client ({module} is missing): "
                              "pip install 'raysr[cluster]'")
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SubmitError("no cluster address: pass --address http://HEAD:8265 (the head's dashboard port) "
                          "or set RAY_API_SERVER_ADDRESS")
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    found = find_auth_token()
    headers = {"Authorization": f"Bearer {found[0]}"} if found else {}
    try:
        return JobSubmissionClient(address, headers=headers)
    except AuthenticationError:
        raise SubmitError(_auth_hint(address, found)) from None
    except ConnectionError as error:
        raise SubmitError(f"cannot reach the Ray job server at {address} ({error}); check that the head runs "
                          "with its dashboard on that host and port (default 8265) and that the port is reachable, "
                          "e.g. through `ray dashboard cluster.yaml` or `kubectl port-forward`") from None


def _auth_hint(address: str, found: tuple[str, str] | None) -> str:
    if found is None:
        return (f"the cluster at {address} requires a token and none was found: set RAY_AUTH_TOKEN, or "
                "RAY_AUTH_TOKEN_PATH to a file holding it, or copy it to ~/.ray/auth_token "
                "(print it on the head with `ray get-auth-token`)")
    return (f"the cluster at {address} refused the token from {found[1]}: copy the head's token "
            "(`ray get-auth-token` on the head) there")


def _call(address: str | None, job_id: str | None, action: Callable):
    """Run ``action(client)``, turning Ray's errors into a SubmitError that says what to do."""
    from ray.exceptions import AuthenticationError

    client = _client(address)
    try:
        return action(client)
    except AuthenticationError:
        raise SubmitError(_auth_hint(address or "RAY_API_SERVER_ADDRESS", find_auth_token())) from None
    except RuntimeError as error:
        if job_id and "does not exist" in str(error):
            raise SubmitError(f"no job {job_id!r} on this cluster; list jobs with `ray job list`") from None
        raise SubmitError(str(error)) from None


def build_runtime_env(spec_path: Path, workdir: Path, pip: list[str] | None, image: str | None,
                      install: bool) -> tuple[dict, str]:
    """(runtime_env, entrypoint) for one submission; with no image, copies the spec into ``workdir``."""
    if install and not image and not pip and "+" in __version__:
        raise SubmitError(f"this raysr is {__version__}, a local build that no package index serves: pass "
                          "--runtime-env-pip with a wheel URL or index version, or --no-install")
    if image:
        target = f"/tmp/raysr-{uuid.uuid4().hex[:12]}.yaml"
        entry = f"printenv {SPEC_ENV_VAR} > {target} && raysr run {target} --address auto"
        return {"image_uri": image, "env_vars": {SPEC_ENV_VAR: spec_path.read_text()}}, entry
    shutil.copyfile(spec_path, workdir / spec_path.name)
    runtime_env: dict = {"working_dir": str(workdir)}
    if install:
        runtime_env["pip"] = list(pip or [default_pip_spec()])
    return runtime_env, f"raysr run {shlex.quote(spec_path.name)} --address auto"


def submit_job(job: str | Path, address: str | None = None, *, pip: list[str] | None = None,
               image: str | None = None, install: bool = True) -> str:
    """Validate ``job`` here, submit it to the cluster at ``address``; returns the job id.

    Args:
        job: path to a YAML job spec.
        address: the head's job server, ``http://HEAD:8265``; None reads ``RAY_API_SERVER_ADDRESS``.
        pip: pip requirements for the job's runtime env; None means ``[default_pip_spec()]``.
        image: a container image with raysr inside (Ray's ``image_uri``); excludes ``pip``.
        install: False ships no pip list (the cluster already has raysr).
    """
    if image and (pip or not install):
        raise SubmitError("--image already carries raysr: drop --runtime-env-pip / --no-install")
    spec_path = Path(job)
    spec = load_spec(spec_path)  # validate before anything leaves this machine
    submission_id = f"raysr-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    metadata = {"raysr_job": spec.name, "raysr_version": __version__}
    with tempfile.TemporaryDirectory(prefix="raysr-submit-") as workdir:  # uploaded by submit_job
        runtime_env, entrypoint = build_runtime_env(spec_path, Path(workdir), pip, image, install)
        return _call(address, None, lambda client: client.submit_job(
            entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id, metadata=metadata))


def job_state(job_id: str, address: str | None = None) -> JobState:
    """The job's status, message, entrypoint and driver exit code."""
    info = _call(address, job_id, lambda client: client.get_job_info(job_id))
    return JobState(job_id, str(info.status), info.message or "", info.entrypoint,
                    getattr(info, "driver_exit_code", None))


def job_logs(job_id: str, address: str | None = None) -> str:
    """Everything the job's driver has printed so far."""
    return _call(address, job_id, lambda client: client.get_job_logs(job_id))


def follow_logs(job_id: str, address: str | None = None) -> Iterator[str]:
    """Yield log chunks as the driver prints them, until the job ends."""
    job_state(job_id, address)  # a clear error for an unknown job or a refused token
    stream = _call(address, job_id, lambda client: client.tail_job_logs(job_id))
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        loop.close()


def stop_job(job_id: str, address: str | None = None) -> bool:
    """Ask the cluster to stop the job; False when it had already finished."""
    return bool(_call(address, job_id, lambda client: client.stop_job(job_id)))


def wait_for_job(job_id: str, address: str | None = None, *, timeout_s: float | None = None,
                 poll_s: float = 2.0, on_change: Callable[[JobState], None] | None = None) -> JobState:
    """Poll until the job ends (or ``timeout_s`` passes: SubmitError); returns its last state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        state = job_state(job_id, address)
        if on_change and state.status != last:
            on_change(state)
        last = state.status
        if state.terminal:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise SubmitError(f"job {job_id} is still {state.status} after {timeout_s:.0f} s; "
                              f"follow it with `raysr logs {job_id} --follow`")
        time.sleep(poll_s)
