"""The files in cluster/ and jobs/: they parse, name job specs that exist and validate, run
`raysr` commands the CLI accepts, ask for GPUs, and never turn Ray's token auth off."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from raysr.cli import build_parser
from raysr.job.spec import load_spec
from raysr.models.registry import is_registered

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
JOB_SPECS = sorted((ROOT / "jobs").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    """Every YAML document in ``path``, plus manifests embedded in ConfigMaps (``*.yaml`` keys)."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in list(docs):
        if doc.get("kind") == "ConfigMap":
            docs += [inner for key, text in doc.get("data", {}).items() if key.endswith(".yaml")
                     for inner in yaml.safe_load_all(text) if inner]
    return docs


def _walk(node, key: str = ""):
    """(key, value) for every value in a parsed YAML tree."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield child_key, child
            yield from _walk(child, child_key)
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child, key)


def _shell_lines() -> list[tuple[str, str]]:
    """(file, command) for every command line in cluster/: entrypoints, launcher *_commands,
    container command/args, Dockerfile RUN lines."""
    lines = []
    for path in YAML_FILES:
        for doc in _documents(path):
            for key, value in _walk(doc):
                if key == "entrypoint":
                    lines.append((path.name, value))
                elif key.endswith("_commands"):
                    lines += [(path.name, command) for command in value]
                elif key in ("command", "args") and isinstance(value, list):
                    lines.append((path.name, " ".join(map(str, value))))
    dockerfile = (CLUSTER / "Dockerfile").read_text().replace("\\\n", " ")
    defaults = dict(re.findall(r'^ARG (\w+)="?([^"\n]*)"?$', dockerfile, re.MULTILINE))  # build-arg defaults
    for line in dockerfile.splitlines():
        if line.startswith("RUN "):
            lines.append(("Dockerfile", re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), line[4:])))
    return lines


def _raysr_commands() -> list[tuple[str, list[str]]]:
    """(file, argv after `raysr`) for every `raysr ...` invocation in a command line."""
    found = []
    for where, line in _shell_lines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens, parts = list(lexer), [[]]
        for token in tokens:  # one simple command per part: split at && || ; |
            if token in ("&&", "||", ";", "|"):
                parts.append([])
            else:
                parts[-1].append(token)
        for words in parts:
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value prefixes
                words.pop(0)
            if words and Path(words[0]).name == "raysr":
                found.append((where, words[1:]))
    return found


def _ray_clusters() -> list[tuple[str, dict]]:
    """(file, RayCluster spec) for every RayCluster, standalone or inside a RayJob."""
    found = []
    for path in YAML_FILES:
        for doc in _documents(path):
            if doc.get("kind") == "RayCluster":
                found.append((path.name, doc["spec"]))
            elif doc.get("kind") == "RayJob":
                found.append((path.name, doc["spec"]["rayClusterSpec"]))
    return found


def test_every_yaml_parses_and_the_expected_files_exist():
    names = {path.relative_to(CLUSTER).as_posix() for path in YAML_FILES}
    assert {"aws.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/cronjob.yaml"} <= names
    for path in YAML_FILES:
        assert _documents(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("path", JOB_SPECS, ids=lambda path: path.name)
def test_every_job_spec_validates(path):
    spec = load_spec(path)
    assert spec.name


def test_raysr_commands_parse_and_name_job_specs_that_exist():
    commands = _raysr_commands()
    parser = build_parser()
    specs_used = set()
    for where, argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: the raysr CLI refuses `raysr {' '.join(argv)}` (its message is above)")
        if args.command in ("run", "validate", "submit"):
            spec_path = ROOT / args.job
            assert spec_path.is_file(), f"{where}: `raysr {' '.join(argv)}` names {args.job}, not in jobs/"
            load_spec(spec_path)
            specs_used.add(args.job.as_posix())
        if args.command == "weights" and args.weights_command == "fetch":
            assert all(is_registered(name) for name in args.names), f"{where}: unknown model in {argv}"
    assert {"jobs/photo-archive-s3.yaml", "jobs/nightly-incremental.yaml"} <= specs_used
    assert {where for where, argv in commands if argv[:2] == ["weights", "fetch"]} >= {"aws.yaml", "Dockerfile"}


def test_rayjobs_run_raysr_and_clean_up_after_themselves():
    rayjobs = [doc for path in YAML_FILES for doc in _documents(path) if doc.get("kind") == "RayJob"]
    assert len(rayjobs) == 2  # rayjob.yaml and the nightly one inside cronjob.yaml
    for job in rayjobs:
        spec = job["spec"]
        assert spec["entrypoint"].startswith("raysr run jobs/") and spec["entrypoint"].endswith("--address auto")
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    cron = next(doc for doc in _documents(CLUSTER / "kuberay" / "cronjob.yaml") if doc["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and len(cron["spec"]["schedule"].split()) == 5


def test_gpu_workers_ask_for_gpus():
    clusters = _ray_clusters()
    assert len(clusters) == 3
    for where, spec in clusters:
        assert spec["headGroupSpec"]["rayStartParams"].get("num-gpus") == "0", where
        for group in spec["workerGroupSpecs"]:
            for container in group["template"]["spec"]["containers"]:
                assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1, (where, group["groupName"])
            assert group["maxReplicas"] >= group["minReplicas"]
    aws = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    workers = {name: node for name, node in aws["available_node_types"].items() if name != aws["head_node_type"]}
    assert {node["node_config"]["InstanceType"].split(".")[0] for node in workers.values()} == {"g5", "g6"}
    for name, node in workers.items():
        assert node["resources"]["GPU"] >= 1 and node["max_workers"] >= node["min_workers"], name
    assert aws["available_node_types"][aws["head_node_type"]]["resources"]["GPU"] == 0


def test_token_auth_is_never_disabled():
    for path in [*YAML_FILES, CLUSTER / "Dockerfile", *JOB_SPECS]:
        text = path.read_text()
        assert not re.search(r"RAY_AUTH_MODE\s*[=:]\s*['\"]?disabled", text), path
    for where, spec in _ray_clusters():
        assert spec["authOptions"]["mode"] == "token", where
    aws = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    for command in aws["head_start_ray_commands"] + aws["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command, command
    assert "~/.ray/auth_token" in aws["file_mounts"]


def test_dockerfile_installs_raysr_and_bakes_weights_into_its_weights_dir():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM .*cuda", text, re.MULTILINE | re.IGNORECASE) or "nvidia/cuda" in text
    assert re.search(r"pip install[^\n]*RAYSR_REQUIREMENT", text) and 'RAYSR_REQUIREMENT="raysr[' in text
    assert "RAYSR_WEIGHTS_DIR=" in text and "--python 3.11" in text
    assert "COPY jobs/ jobs/" in text
