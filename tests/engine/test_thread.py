import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from raysr.engine.thread import ModelThread


def test_every_call_runs_on_one_thread_one_at_a_time_whoever_asks():
    model_thread = ModelThread()
    running, most_at_once, idents = [0], [0], set()
    lock = threading.Lock()

    def work(value):
        with lock:
            running[0] += 1
            most_at_once[0] = max(most_at_once[0], running[0])
            idents.add(threading.get_ident())
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return value * 2

    with ThreadPoolExecutor(4) as callers:
        results = list(callers.map(lambda value: model_thread.run(work, value), range(12)))
    assert results == [value * 2 for value in range(12)]
    assert most_at_once[0] == 1 and len(idents) == 1 and threading.get_ident() not in idents


def test_an_exception_reaches_the_caller_and_the_thread_lives_on():
    model_thread = ModelThread()
    with pytest.raises(ZeroDivisionError):
        model_thread.run(lambda: 1 / 0)
    assert model_thread.run(sum, [1, 2, 3]) == 6


def test_a_call_from_the_model_thread_itself_runs_at_once():
    model_thread = ModelThread()
    outer = ThreadPoolExecutor(1)
    # Nested: a callback of a call on the model thread asks for the model thread again.
    future = outer.submit(model_thread.run, lambda: model_thread.run(lambda: threading.get_ident()))
    inner_ident = future.result(timeout=10)  # a deadlock would time out here
    assert inner_ident == model_thread.run(threading.get_ident)


def test_the_thread_ends_once_nothing_holds_the_model_thread():
    import gc

    model_thread = ModelThread(name="raysr-test-model")
    assert model_thread.run(lambda: threading.current_thread().name).startswith("raysr-test-model")
    del model_thread
    gc.collect()
    deadline = time.monotonic() + 10
    while any(thread.name.startswith("raysr-test-model") for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the model thread outlived its ModelThread"
        time.sleep(0.01)
