"""Write the demo's sample inputs: small real photos shipped by scikit-image, a
generated flat-colour drawing, a short clip with audio panning across a photo
(and optionally a corrupt file), so the demo shows several kinds of input
without downloading anything.

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


def write_demo_clip(path: str | Path, seconds: float = 1.5, size: tuple[int, int] = (96, 64), fps: int = 24) -> Path:
    """A short H.264 clip panning across a real photo, with a 440 Hz AAC track."""
    import av
    from skimage import data

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    photo = data.astronaut()
    width, height = size
    frames = int(seconds * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = fps // 2
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        for index in range(frames):
            left = index * 4
            crop = cv2.resize(photo[100:100 + height * 3, left: left + width * 3], (width, height), interpolation=cv2.INTER_AREA)
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")):
                container.mux(packet)
        samples = np.arange(int(seconds * 48000)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * samples)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = np.stack([tone[start:start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


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
    written.append(write_demo_clip(folder / "video" / "pan.mp4"))
    if with_broken:
        broken = folder / "photos" / "broken.png"
        write_atomic(broken, (folder / "photos/astronaut.png").read_bytes()[:300])
        written.append(broken)
    return written


if __name__ == "__main__":
    arguments = [arg for arg in sys.argv[1:] if arg != "--with-broken"]
    for path in write_demo_inputs(arguments[0] if arguments else "demo-in", "--with-broken" in sys.argv):
        print(path)
