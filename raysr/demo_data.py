"""Write the demo's sample inputs: small real photos shipped by scikit-image, plus
a generated flat-colour drawing (and optionally a corrupt file), so the demo
shows several kinds of input without downloading anything.

Usage: ``python -m raysr.demo_data DIR [--with-broken]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from raysr.sinks.write import write_atomic


def _drawing(size: int = 128) -> np.ndarray:
    """A flat-colour 'anime-like' drawing: few colours, hard dark outlines."""
    image = np.full((size, size, 3), (250, 236, 210), np.uint8)
    cv2.circle(image, (64, 60), 38, (255, 205, 170), -1)
    cv2.circle(image, (64, 60), 38, (40, 30, 30), 2)
    cv2.ellipse(image, (64, 40), (44, 22), 0, 180, 360, (90, 60, 160), -1)
    for x in (50, 78):
        cv2.circle(image, (x, 62), 6, (30, 120, 200), -1)
        cv2.circle(image, (x, 62), 6, (20, 20, 20), 1)
    cv2.line(image, (56, 84), (72, 84), (180, 60, 60), 2)
    return image


def write_demo_inputs(folder: str | Path, with_broken: bool = False) -> list[Path]:
    """Write the sample inputs into ``folder`` and return their paths.

    ``with_broken`` adds a truncated PNG, to show that one bad file becomes an
    error row while the rest of a job finishes.
    """
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the demo needs scikit-image: pip install 'raysr[demo]'") from None
    folder = Path(folder)
    samples = {
        "photos/astronaut.png": cv2.resize(data.astronaut()[:320, 80:400], (128, 128), interpolation=cv2.INTER_AREA),
        "photos/coffee.jpg": cv2.resize(data.coffee(), (160, 120), interpolation=cv2.INTER_AREA),
        "photos/cat.png": cv2.resize(data.chelsea(), (150, 100), interpolation=cv2.INTER_AREA),
        "photos/camera-gray.png": cv2.resize(data.camera(), (96, 96), interpolation=cv2.INTER_AREA),
        "drawings/face.png": _drawing(),
    }
    written = []
    for relative, pixels in samples.items():
        path = folder / relative
        bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(path.suffix, bgr)
        assert ok, relative
        write_atomic(path, encoded.tobytes())
        written.append(path)
    if with_broken:
        broken = folder / "photos" / "broken.png"
        write_atomic(broken, (folder / "photos/astronaut.png").read_bytes()[:300])
        written.append(broken)
    return written


if __name__ == "__main__":
    arguments = [arg for arg in sys.argv[1:] if arg != "--with-broken"]
    for path in write_demo_inputs(arguments[0] if arguments else "demo-in", "--with-broken" in sys.argv):
        print(path)
