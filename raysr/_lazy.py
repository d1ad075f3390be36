"""Package attributes that import their module on first use (PEP 562).

A Ray worker that only reads, hashes or encodes files imports ``raysr.stages.read``; the
packages on its way (``raysr``, ``raysr.engine``) must not pull in torch and spandrel.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` serving each name in ``homes`` (name → module) from its module.

    Example:
        >>> __getattr__ = lazy_attributes(__name__, {"Upscaler": "raysr.engine.upscaler"})
    """

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(homes[name]), name)

    return __getattr__
