import threading
import time

import pytest

from clips import write_clip
from raysr.video._overlap import BackgroundSink, prefetch
from raysr.video.probe import plan_segments
from raysr.video.segment import encode_segment


def _raysr_threads() -> list[str]:
    """The overlap's own threads still alive (other raysr threads, a stage's model thread, may live on)."""
    return [thread.name for thread in threading.enumerate() if thread.name in ("raysr-decode", "raysr-encode")]


def test_prefetch_keeps_order_and_runs_the_producer_in_its_own_thread():
    seen_in = []

    def items():
        for index in range(5):
            seen_in.append(threading.current_thread().name)
            yield index

    assert list(prefetch(items)) == [0, 1, 2, 3, 4]
    assert set(seen_in) == {"raysr-decode"} and not _raysr_threads()


def test_prefetch_raises_the_producers_error_after_its_items():
    def items():
        yield 1
        raise ValueError("corrupt packet at 3.2 s")

    got = []
    with pytest.raises(ValueError, match="corrupt packet"):
        for item in prefetch(items):
            got.append(item)
    assert got == [1] and not _raysr_threads()


def test_stopping_early_closes_the_producer_in_its_thread():
    closed_in = []

    def items():
        try:
            for index in range(1000):
                yield index
        finally:
            closed_in.append(threading.current_thread().name)

    for item in prefetch(items):
        if item == 3:
            break
    assert closed_in == ["raysr-decode"] and not _raysr_threads()


def test_background_sink_consumes_in_order_and_reports_its_error():
    consumed = []
    sink = BackgroundSink(consumed.append)
    for index in range(6):
        sink.put(index)
    sink.close()
    assert consumed == list(range(6)) and not _raysr_threads()

    def fail_on_two(item):
        if item == 2:
            raise RuntimeError("encoder failed")

    sink = BackgroundSink(fail_on_two)
    with pytest.raises(RuntimeError, match="encoder failed"):
        for index in range(50):
            sink.put(index)
            time.sleep(0.001)
        sink.close()
    sink.stop()
    assert not _raysr_threads()


def test_decode_and_encode_overlap_the_model_and_stop_with_it(tmp_path):
    path = tmp_path / "clip.mkv"
    write_clip(path, frames=12, size=(32, 24), fps=12, gop=12, audio=None)
    segment = plan_segments(path, target_seconds=100)[0]
    threads_during_model = []

    def model(rgb):
        threads_during_model.append(set(_raysr_threads()))
        return rgb.repeat(2, axis=0).repeat(2, axis=1)

    encoded = encode_segment(path, segment, model)
    assert encoded.frames == 12 and encoded.decode_s > 0 and encoded.encode_s > 0
    assert all("raysr-encode" in names for names in threads_during_model)
    assert all("raysr-decode" in names for names in threads_during_model[:6])  # decoding runs ahead

    def broken(rgb):
        raise RuntimeError("CUDA error: device-side assert")

    with pytest.raises(RuntimeError, match="device-side assert") as info:
        encode_segment(path, segment, broken)
    assert "segment 0, frame pts" in "".join(info.value.__notes__)
    assert not _raysr_threads(), "a failed segment leaves no thread behind"
