"""The official Real-ESRGAN loop as a benchmark peer, in its own virtual environment.

The peer venv (``$RAYSR_BENCH_DIR``, default ``~/.cache/raysr/bench-official``) is
made once and reused:

1. ``python -m venv --without-pip`` with the interpreter running raysr;
2. a ``.pth`` that adds raysr's site-packages *after* the peer's own, so torch,
   torchvision, numpy and OpenCV are the very builds raysr uses (no second torch,
   which would be ~5 GB with CUDA, and no version skew between the two sides);
3. ``pip install --no-deps --ignore-installed --no-build-isolation`` of realesrgan
   0.3.0, basicsr 1.4.2 and the small pure-Python modules they import
   (:data:`PEER_PACKAGES`); ``--ignore-installed`` so pip never uninstalls
   anything from raysr's environment, ``--no-build-isolation`` because basicsr's
   setup.py imports torch (an isolated build would download one);
4. a ``.pth`` importing a shim module that aliases ``torchvision.transforms.functional_tensor``
   (removed in torchvision 0.17) to ``torchvision.transforms.functional``, the
   shim everyone uses to import basicsr 1.4.2 today.

The loop itself is :mod:`raysr.bench._official_runner`, run with the peer's Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

from raysr.bench._child import run_child
from raysr.models.load import LoadedModel, read_state_dict

PEER_PACKAGES = ("realesrgan==0.3.0", "basicsr==1.4.2", "addict", "yapf", "lmdb", "future")
_SHIM = '''"""raysr bench: basicsr 1.4.2 imports a torchvision module removed in 0.17; alias it."""
import sys

try:
    import torchvision.transforms.functional as _functional
except Exception:  # noqa: BLE001 - no torchvision: basicsr fails with its own message
    pass
else:
    sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional)
'''
_RUNNER = Path(__file__).with_name("_official_runner.py")


class OfficialBenchError(RuntimeError):
    """The official peer could not be installed or run; the message says how to fix it."""


def default_bench_dir() -> Path:
    """``$RAYSR_BENCH_DIR``, else ``~/.cache/raysr/bench-official``."""
    return Path(os.environ.get("RAYSR_BENCH_DIR") or Path.home() / ".cache" / "raysr" / "bench-official")


def official_python(bench_dir: str | Path | None = None) -> Path:
    """The peer venv's Python with realesrgan + basicsr importable; made on first use (needs the package index)."""
    venv = Path(bench_dir or default_bench_dir()) / f"venv-py{sys.version_info.major}{sys.version_info.minor}"
    python = venv / "bin" / "python"
    ready = venv / ".raysr-ready"
    if ready.is_file():
        return python
    # 1. the venv, sharing raysr's site-packages (processed as a site dir: its .pth files count too)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    peer_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    raysr_site = sysconfig.get_path("purelib")
    # The shim is imported by the same .pth, after raysr's site dir (where torchvision is) is
    # added; not a sitecustomize.py, which Debian/Ubuntu Pythons shadow with their own.
    (peer_site / "raysr_bench_shim.py").write_text(_SHIM)
    (peer_site / "zz-raysr-site.pth").write_text(f"import site; site.addsitedir({raysr_site!r})\n"
                                                 "import raysr_bench_shim\n")
    # 2. the official packages, without their dependencies (torch & co. come from raysr's venv)
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--ignore-installed", "--no-build-isolation", *PEER_PACKAGES]
    done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode:
        raise OfficialBenchError(f"installing {' '.join(PEER_PACKAGES)} into {venv} failed "
                                 f"(needs the package index):\n{done.stderr[-2000:]}")
    check = subprocess.run([str(python), "-c", "import realesrgan, basicsr, importlib.metadata as m; print(m.version('realesrgan'))"],
                           capture_output=True, text=True)
    if check.returncode:
        raise OfficialBenchError(f"realesrgan does not import in {venv}:\n{check.stderr[-2000:]}")
    ready.write_text(check.stdout)
    return python


def official_arch(loaded: LoadedModel) -> dict:
    """Constructor arguments of basicsr's RRDBNet / realesrgan's SRVGGNetCompact for ``loaded``'s weights."""
    state = read_state_dict(loaded.weights.path)
    if loaded.arch == "ESRGAN":
        blocks = {key.split(".")[1] for key in state if key.startswith("body.") and ".rdb1.conv1." in key}
        return {"arch": "ESRGAN", "scale": loaded.scale, "num_feat": int(state["conv_first.weight"].shape[0]),
                "num_block": len(blocks), "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0])}
    if loaded.arch == "Compact":
        convs = sum(1 for key, value in state.items() if key.endswith(".weight") and value.ndim == 4)
        return {"arch": "Compact", "scale": loaded.scale, "num_feat": int(state["body.0.weight"].shape[0]),
                "num_conv": convs - 2}
    raise OfficialBenchError(f"the official loop runs ESRGAN and Compact models, not {loaded.arch}")


def official_weights(loaded: LoadedModel, work: str | Path) -> Path:
    """``loaded``'s tensors in the official checkpoint layout (``{"params_ema": state}``), which RealESRGANer needs."""
    path = Path(work) / "official-weights.pth"
    if not path.is_file():
        torch.save({"params_ema": read_state_dict(loaded.weights.path)}, path)
    return path


def run_official(python: str | Path, loaded: LoadedModel, images: list[Path], tile: int, work: str | Path,
                 out_dir: str | Path | None = None, warmup: bool = True, timeout_s: float | None = None) -> dict:
    """Run the official loop over ``images`` in a fresh process; returns the runner's JSON report.

    Same weights as ``loaded``, the given ``tile`` (0 = untiled), the official
    ``tile_pad=10``, ``pre_pad=0``, and ``half`` exactly when CUDA is present
    (what the official script does by default).
    """
    command = [str(python), str(_RUNNER), "--weights", str(official_weights(loaded, work)),
               "--arch", json.dumps(official_arch(loaded)), "--tile", str(tile)]
    if torch.cuda.is_available():
        command.append("--half")
    if out_dir is not None:
        command += ["--out-dir", str(out_dir)]
    if warmup:
        command.append("--warmup")
    return run_child([*command, *map(str, images)], "the official loop", timeout_s, error=OfficialBenchError)
