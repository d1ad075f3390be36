"""Fixtures of the video tests; the clip generators live in ``tests/clips.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from clips import nearest2x, pattern, write_clip


@pytest.fixture
def clip(tmp_path: Path):
    """``clip(name, **write_clip options) -> Path``: a fresh clip in this test's tmp dir."""

    def _clip(name: str = "clip.mp4", **options) -> Path:
        path = tmp_path / name
        write_clip(path, **options)
        return path

    return _clip


@pytest.fixture
def upscale2x():
    return nearest2x


@pytest.fixture
def rgb_pattern():
    """``rgb_pattern(index, width, height)``: the clips' frame ``index`` as (H, W, 3) uint8 RGB."""
    return pattern
