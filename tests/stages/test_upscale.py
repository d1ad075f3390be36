import cv2
import numpy as np
import pyarrow as pa

from factories import compact_state
from raysr.engine import EngineOptions
from raysr.stages._batch import rows_of, unpack_pixels
from raysr.stages.upscale import UpscaleStage


def _batch(*items):
    return pa.table({"input_uri": [uri for uri, _ in items], "data": [data for _, data in items],
                     "status": pa.array([None] * len(items), pa.string())})


def test_stage_upscales_good_rows_and_fails_bad_ones_without_raising(save_state, photo):
    stage = UpscaleStage(str(save_state(compact_state())), EngineOptions(precision="fp32"))
    good = cv2.imencode(".png", cv2.cvtColor(photo[:20, :24], cv2.COLOR_RGB2BGR))[1].tobytes()
    rows = rows_of(stage(_batch(("/in/good.png", good), ("/in/bad.png", b"garbage"))))
    assert rows[0]["status"] is None and unpack_pixels(rows[0]).shape == (80, 96, 3)
    assert rows[0]["precision"] == "fp32" and rows[0]["weights_sha256"] and rows[0]["model_arch"] == "Compact"
    assert rows[1]["status"] == "error" and rows[1]["error_stage"] == "upscale"
    assert rows[1]["error_message"].startswith("/in/bad.png: ")
    assert rows[1]["pixels"] is None


def test_item_timeout_becomes_an_error_row(save_state, photo):
    stage = UpscaleStage(str(save_state(compact_state())), EngineOptions(precision="fp32", tile=16), timeout_s=1e-9)
    data = cv2.imencode(".png", photo[:64, :64])[1].tobytes()
    row = rows_of(stage(_batch(("/in/slow.png", data))))[0]
    assert row["status"] == "error" and row["error_type"] == "timeout"
    assert "item timeout" in row["error_message"]


def test_rows_already_failed_pass_through_untouched(save_state):
    stage = UpscaleStage("bicubic", EngineOptions())
    batch = pa.table({"input_uri": ["/x"], "data": [b""], "status": ["error"]})
    assert rows_of(stage(batch))[0]["status"] == "error"


def test_concurrent_calls_overlap_decoding_and_queue_for_the_model_thread(photo, monkeypatch):
    import threading
    import time

    import raysr.stages.upscale as upscale_module

    stage = UpscaleStage("bicubic", EngineOptions())
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    in_model = threading.Event()
    upscale, decode = stage.upscaler.upscale, upscale_module.decode_input

    def slow_model(pixels, timeout_s=None):
        with lock:
            events.append(("model start", threading.current_thread().name))
        in_model.set()
        time.sleep(0.3)  # a GPU call: the other thread decodes meanwhile
        with lock:
            events.append(("model end", threading.current_thread().name))
        return upscale(pixels, timeout_s=timeout_s)

    def recorded_decode(row):
        if threading.current_thread().name == "second":
            in_model.wait(5)  # decode only once the first call is inside the model
        with lock:
            events.append(("decode", threading.current_thread().name))
        return decode(row)

    monkeypatch.setattr(stage.upscaler, "upscale", slow_model)
    monkeypatch.setattr(upscale_module, "decode_input", recorded_decode)
    data = cv2.imencode(".png", photo[:24, :32])[1].tobytes()
    results: dict[str, list] = {}

    def call(name: str) -> None:
        results[name] = rows_of(stage(_batch((f"/in/{name}.png", data))))

    threads = [threading.Thread(target=call, args=(name,), name=name) for name in ("first", "second")]
    threads[0].start()
    in_model.wait(5)
    threads[1].start()
    for thread in threads:
        thread.join(10)

    assert UpscaleStage.concurrent_calls == 2
    order = [f"{kind}:{name}" for kind, name in events]
    model = [(kind, name) for kind, name in events if kind.startswith("model")]
    # The second item was decoded while the first was in the model, and its model call waited ...
    assert order.index("decode:second") < order.index("model end:raysr-model_0"), order
    assert [kind for kind, _ in model] == ["model start", "model end"] * 2, order
    # ... on the one thread the model runs on, neither caller's.
    assert {name for _, name in model} == {"raysr-model_0"}, order
    for name in ("first", "second"):
        row = results[name][0]
        assert row["status"] is None and unpack_pixels(row).shape == (96, 128, 3)


def test_the_model_loads_and_runs_on_one_thread_whichever_thread_calls(save_state, photo, monkeypatch):
    # PyTorch on a CPU slows ~1.3x once two threads have started OpenMP teams (raysr/engine/thread.py).
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import raysr.stages.upscale as upscale_module

    threads_seen: list[tuple[str, int]] = []
    load = upscale_module._network_upscaler

    def recorded_load(*args):
        threads_seen.append(("load", threading.get_ident()))
        return load(*args)

    monkeypatch.setattr(upscale_module, "_network_upscaler", recorded_load)
    stage = UpscaleStage(str(save_state(compact_state())), EngineOptions(precision="fp32"))
    stage.upscaler._module.register_forward_pre_hook(lambda *_: threads_seen.append(("forward", threading.get_ident())))
    data = cv2.imencode(".png", photo[:20, :24])[1].tobytes()
    with ThreadPoolExecutor(2) as callers:  # as Ray runs an actor's two concurrent calls
        rows = [row for batch in callers.map(stage, [_batch((f"/in/{n}.png", data)) for n in range(6)])
                for row in rows_of(batch)]
    assert all(row["status"] is None for row in rows)
    assert [kind for kind, _ in threads_seen].count("forward") >= 6 and threads_seen[0][0] == "load"
    assert len({ident for _, ident in threads_seen}) == 1
    assert threads_seen[0][1] != threading.get_ident()
