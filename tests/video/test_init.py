"""The package's public API, and that it stays free of Ray (actors and drivers import it alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import raysr.video


def test_public_names_resolve():
    assert all(hasattr(raysr.video, name) for name in raysr.video.__all__)


def test_no_module_imports_ray():
    """Static, so it costs no interpreter start (tests/engine checks what ``import raysr`` pulls in)."""
    for path in Path(raysr.video.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name == "ray" or name.startswith("ray.") for name in names), f"{path.name} imports {names}"
