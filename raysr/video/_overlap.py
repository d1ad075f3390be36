"""Decode ahead and encode behind the model, in threads of their own.

The model is the expensive step; a segment's decoding and encoding run beside
it so it never waits for them (PyAV releases the GIL while FFmpeg decodes and
encodes; torch while it computes). Queues are a couple of frames deep: memory
stays a few frames per segment, as before.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

Item = TypeVar("Item")

QUEUE_FRAMES = 2  # frames waiting on each side of the model
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _put(target: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless the consumer gave up; False once ``stop`` is set."""
    while not stop.is_set():
        try:
            target.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(make_items: Callable[[], Iterator[Item]], depth: int = QUEUE_FRAMES) -> Iterator[Item]:
    """Yield ``make_items()``'s items, produced in a background thread up to ``depth`` ahead.

    The producer's exception is raised here, in the consumer, at the point its items
    ran out; when the consumer stops early, the producer stops and closes its iterator
    (its files) in its own thread before this generator returns.

    Attributes set on the generator's thread are not shared: ``make_items`` is called
    in the producer thread, so everything it opens lives there.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = None
        try:
            iterator = make_items()
            for item in iterator:
                if not _put(items, item, stop):
                    return
            _put(items, _DONE, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            _put(items, _Failure(error), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="raysr-decode", daemon=True)
    producer.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        producer.join()


class BackgroundSink:
    """Call ``consume(item)`` for every :meth:`put` item in a thread of its own, in order.

    The sink's first exception is raised by the next :meth:`put` or by :meth:`close`;
    ``seconds`` is the time spent in ``consume``.

    Example:
        >>> sink = BackgroundSink(print)
        >>> sink.put("a frame")  # doctest: +SKIP
        >>> sink.close()  # waits for the queue to drain; raises what consume raised
    """

    def __init__(self, consume: Callable[[object], None], depth: int = QUEUE_FRAMES) -> None:
        self._consume = consume
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="raysr-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _DONE:
                return
            if self._error is not None:
                continue  # drain: the producer learns of the error on its next put
            started = time.perf_counter()
            try:
                self._consume(item)
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                self._error = error
            self.seconds += time.perf_counter() - started

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: object) -> None:
        self._raise()
        _put(self._items, item, self._stop)

    def close(self) -> None:
        """Wait until every item is consumed; raise the sink's error, if any."""
        self.stop()
        self._raise()

    def stop(self) -> None:
        """Let the thread finish what is queued and end (also after an error in the caller)."""
        if self._thread.is_alive():
            _put(self._items, _DONE, self._stop)
            self._thread.join()
