"""Items that kill their worker: real Ray, real process deaths (``os._exit`` in the worker), bounded."""

import os
import sys
import threading

import pyarrow as pa
import ray
import ray.data

from raysr.job.crashes import CrashLedger, MAX_DEATHS, guard, start_ledger
from raysr.stages._batch import batch_of, rows_of

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests


class Poisoned:
    """Marks rows ok; its process dies on the item ``poison`` (a decoder's segfault, an OOM kill)."""

    concurrent_calls = 1

    def __call__(self, batch):
        rows = rows_of(batch)
        for row in rows:
            if row.get("status") is None:
                if row["item_id"] == "poison":
                    os._exit(1)
                row["status"] = "ok"
        return batch_of(rows)


def _items() -> pa.Table:
    return batch_of([{"item_id": item, "input_uri": f"/in/{item}.png", "status": None}
                     for item in ("a", "poison", "b", "c")])


def _collect(dataset, timeout_s: float = 240.0) -> dict[str, dict]:
    """Every row the dataset yields, by item; fails (instead of hanging) if the run never ends."""
    rows: list[dict] = []
    done = threading.Event()

    def consume():
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            rows.extend(batch.to_pylist())
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(timeout_s), f"the run did not end in {timeout_s:.0f} s: an item killing its worker loops"
    return {row["item_id"]: row for row in rows}


def _check(rows: dict[str, dict]) -> None:
    assert sorted(rows) == ["a", "b", "c", "poison"]
    assert [rows[item]["status"] for item in ("a", "b", "c")] == ["ok", "ok", "ok"]
    poison = rows["poison"]
    assert (poison["status"], poison["error_type"], poison["error_stage"]) == ("error", "worker_died", "Poisoned")
    assert poison["error_message"].startswith("/in/poison.png: the Poisoned worker died 2 times")


def test_an_item_that_kills_its_actor_every_time_becomes_an_error_row(ray_cluster):
    start_ledger()
    dataset = ray.data.from_arrow(_items()).map_batches(
        guard(Poisoned), batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1))
    _check(_collect(dataset))


def test_a_task_that_dies_on_one_item_of_its_block_blames_that_item_only(ray_cluster):
    start_ledger()
    dataset = ray.data.from_arrow(_items()).map_batches(guard(Poisoned()), batch_size=None, batch_format="pyarrow")
    _check(_collect(dataset))


def test_the_ledger_blames_what_was_in_flight_and_forgets_what_finished(ray_cluster):
    ledger = CrashLedger.remote()
    assert ray.get(ledger.start.remote("S", ["a", "b"])) == [0, 0]
    ledger.finish.remote("S", ["a"])
    assert ray.get(ledger.start.remote("S", ["a", "b"])) == [0, 1]  # b was in flight when its worker died
    assert ray.get(ledger.start.remote("S", ["b"])) == [MAX_DEATHS]
    assert ray.get(ledger.start.remote("T", ["b"])) == [0]  # another stage: its own account
    ledger.reset.remote()
    assert ray.get(ledger.start.remote("S", ["b"])) == [0]


def test_a_guarded_stage_keeps_its_name_and_its_results(ray_cluster):
    start_ledger()
    stage = guard(Poisoned())
    assert type(stage).__name__ == "Poisoned" and isinstance(stage, Poisoned)  # what Ray shows for its workers
    rows = stage(batch_of([{"item_id": "a", "input_uri": "/in/a.png", "status": None}])).to_pylist()
    assert [row["status"] for row in rows] == ["ok"]
