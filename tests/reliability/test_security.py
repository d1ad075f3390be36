"""Security properties: no input name writes outside the output prefix, planted secrets
never reach the manifest or logs, weights are checked and never unpickle code, job specs
refuse unknown keys, and no cluster config turns Ray's token auth off."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from raysr.job.spec import SpecError, parse_spec
from raysr.manifest import read_manifest
from raysr.models.load import ModelLoadError, read_state_dict
from raysr.sinks.write import UnsafePathError, output_relpath, write_atomic
from raysr.sources.listing import list_local
from raysr.storage import output_uri
from raysr.weights.resolve import WeightsError, resolve_weights

REPO = Path(__file__).resolve().parents[2]
FAKE_SECRET = "RAYSRFAKESECRETdo-not-log-7f3a9c21e5"


@pytest.mark.parametrize("name", [
    "../escape.png", "a/../../escape.png", "/etc/passwd.png", "..\\..\\escape.png", "a\\..\\..\\b.png",
    "a/./b.png", "a//b.png", "nul\x00.png", "..", ".",
])
def test_unsafe_input_names_are_refused(name, figures):
    figures["hostile names refused"] += 1
    with pytest.raises(UnsafePathError):
        output_relpath(name, ".png")
    with pytest.raises(UnsafePathError):
        output_uri("/srv/out", name, ".png")
    with pytest.raises(UnsafePathError):
        output_uri("s3://bucket/out", name, ".png")


@pytest.mark.parametrize("name", ["ok.png", "a/b/c.jpg", "..hidden-ish.png", "a..b.png", "日本/☃ x.png", "new\nline.png"])
def test_safe_names_stay_under_the_output_root(name, tmp_path):
    target = Path(output_uri(str(tmp_path / "out"), name, ".png"))
    assert target.resolve().is_relative_to((tmp_path / "out").resolve())
    assert output_uri("s3://bucket/out/", name, ".png").startswith("s3://bucket/out/")


def test_symlinks_cannot_lead_outside(tmp_path):
    """Input side: a symlinked folder is not walked; a symlinked file is read but its output
    mirrors the link's name inside the output root. Output side: a symlinked folder in the
    output tree pointing elsewhere is refused at write time."""
    root, outside, out = tmp_path / "in", tmp_path / "outside", tmp_path / "out"
    for folder in (root, outside / "deep", out):
        folder.mkdir(parents=True)
    png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes()
    (root / "real.png").write_bytes(png)
    (outside / "deep" / "secret.png").write_bytes(png)
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "escape_file.png").symlink_to(outside / "deep" / "secret.png")
    relatives = [item.relative for item in list_local(str(root))]
    assert relatives == ["escape_file.png", "real.png"]  # the linked folder is not entered
    for relative in relatives:
        assert Path(output_uri(str(out), relative, ".png")).parent == out.resolve()

    (out / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        write_atomic(out / "sub" / "x.png", b"data", root=out)
    assert not (outside / "x.png").exists()


def test_weights_are_sha256_checked(tmp_path):
    weights = tmp_path / "model.pth"
    torch.save({"params_ema": {"w": torch.zeros(2)}}, weights)
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(str(weights), expected_sha256="0" * 64)
    # A registry model's cached file that was altered is refused, not used.
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "RealESRGAN_x4plus.pth").write_bytes(weights.read_bytes())
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights("RealESRGAN_x4plus", tmp_path / "cache", sources=("cache",))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_exploit_in_weights_is_refused(tmp_path, figures):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"params_ema": _Exploit(marker)}, evil)
    with pytest.raises(ModelLoadError, match="not a loadable weights file"):
        read_state_dict(evil)
    assert not marker.exists(), "pickled code ran while loading weights"
    figures["pickle exploits refused"] += 1


@pytest.mark.parametrize("data, key", [
    ({"bogus": 1}, "bogus"),
    ({"output": {"path": "o", "colour": "x"}}, "colour"),
    ({"engine": {"tiles": 4}}, "tiles"),
    ({"limits": {"max_pixel": 1}}, "max_pixel"),
])
def test_job_spec_refuses_unknown_keys(data, key):
    base = {"name": "x", "inputs": ["in/"], "output": {"path": "o"}, "model": "bicubic"}
    merged = {**base, **data}
    with pytest.raises(SpecError, match=key):
        parse_spec(merged)


def test_no_cluster_file_disables_ray_token_auth():
    files = [path for path in (REPO / "cluster").rglob("*") if path.is_file()]
    assert files
    settings = []
    for path in files:
        text = path.read_text(errors="replace")
        for match in re.finditer(r"RAY_AUTH_MODE[\"']?\s*[=:]\s*[\"']?([\w-]*)", text):
            settings.append((path.name, match.group(1)))
            assert match.group(1) == "token", f"{path}: RAY_AUTH_MODE={match.group(1)}"
        lowered = text.lower()
        assert "auth_mode=disabled" not in lowered and "mode: disabled" not in lowered, path
        assert "--disable-auth" not in lowered, path
        if re.search(r"\bray start\b", text):
            assert "RAY_AUTH_MODE=token" in text or "RAY_AUTH_MODE" in (REPO / "cluster" / "Dockerfile").read_text(), path
    assert settings, "no file in cluster/ sets RAY_AUTH_MODE"


def _strings_of(table: pa.Table) -> str:
    parts = []
    for column in table.column_names:
        parts += [str(value) for value in table.column(column).to_pylist() if value is not None]
    return "\n".join(parts)


def test_planted_secret_never_leaks(tmp_path, figures):
    """A `raysr run` subprocess with a fake AWS secret in its environment (and failing items):
    the secret appears in neither the manifest, stdout/stderr, nor Ray's session logs."""
    root = tmp_path / "in"
    root.mkdir()
    cv2.imwrite(str(root / "good.png"), np.full((24, 24, 3), 120, np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "notes.png").write_text("not an image")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "secret", "inputs": [str(root)], "output": {"path": str(tmp_path / "out")},
                                   "model": "bicubic", "stages": {"metrics": False}}))
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID="AKIARAYSRFAKE", AWS_SECRET_ACCESS_KEY=FAKE_SECRET, AWS_SESSION_TOKEN=FAKE_SECRET + "tok",
               RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1")
    try:
        result = subprocess.run([sys.executable, "-m", "raysr", "run", str(job)], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=150, start_new_session=True)
        assert result.returncode == 1, result.stderr[-3000:]  # items failed, allow_errors is off
        assert re.search(r"^model actors: \w+ 1 per pool; 0 GPU\(s\)", result.stderr, re.M)  # the plan, told
        manifest = read_manifest(str(tmp_path / "out" / "_raysr" / "manifest"))
        assert manifest.num_rows == 3
        assert "broken.png" in _strings_of(manifest)
        logs = [path for path in ray_tmp.rglob("*") if path.is_file() and path.suffix in (".log", ".out", ".err", ".txt", ".json")]
        haystacks = {"stdout": result.stdout, "stderr": result.stderr, "manifest": _strings_of(manifest)}
        haystacks.update({str(path): path.read_text(errors="replace") for path in logs})
        for where, text in haystacks.items():
            assert FAKE_SECRET not in text, f"the planted secret leaked into {where}"
        figures["secret scans (files/streams)"] += len(haystacks)
        print(f"\nplanted secret absent from {len(haystacks)} places (manifest, stdout, stderr, {len(logs)} Ray logs)")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
