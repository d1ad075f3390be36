"""The one thread a process's model runs on, whichever thread asks.

PyTorch's CPU kernels run on OpenMP (libgomp in PyTorch's wheels), which keeps a team of
worker threads for every thread that starts parallel work. Once a process holds more of those
threads than it has cores, every team sleeps between kernels instead of spinning, and a model
of thousands of short kernels pays a wake-up for each. A Ray actor that takes two calls at once
runs them on two threads of Ray's pool, so a model called from both starts a second team.
Measured on a 2-core Xeon (x4plus, bf16, 256² in 128² tiles): 3.1 s a call from one thread,
4.0 s from alternating ones; and a single conv stack went from 0.085 to 0.112 s as soon as a
second thread had started a team. So an actor loads and calls its model here, on one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")


class ModelThread:
    """Runs every call given to :meth:`run` on one thread of its own, one at a time.

    Example:
        >>> thread = ModelThread()
        >>> thread.run(sum, [1, 2, 3])
        6
    """

    def __init__(self, name: str = "raysr-model") -> None:
        # The thread's initializer must not hold ``self``: the thread would keep this object, and
        # with it the executor, alive for ever. Unreferenced, the executor ends its thread.
        self._idents: list[int] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name,
                                            initializer=_append_ident, initargs=(self._idents,))

    def run(self, fn: Callable[..., _T], /, *args, **kwargs) -> _T:
        """``fn(*args, **kwargs)`` on the model thread; its result, or its exception raised here.

        A call made from the model thread itself (a callback of a call already running there)
        runs at once: waiting for the thread would wait forever.
        """
        if threading.get_ident() in self._idents:
            return fn(*args, **kwargs)
        return self._executor.submit(fn, *args, **kwargs).result()


def _append_ident(idents: list[int]) -> None:
    idents.append(threading.get_ident())
