"""Arrow tables travel between Ray workers as IPC streams (raysr/job/transport.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa

from raysr.job.transport import _from_ipc, _to_ipc
from raysr.stages._batch import batch_of


def _rows(count: int, pixels_side: int = 8) -> list[dict]:
    return [{
        "item_id": f"id{index}", "input_uri": f"/in/{index}.png", "status": None if index % 2 else "error",
        "error_message": None, "upscale_s": 0.25 * index, "pixels_shape": [pixels_side, pixels_side, 3],
        "pixels": np.full((pixels_side, pixels_side, 3), index, np.uint8).tobytes(),
    } for index in range(count)]


def test_round_trip_keeps_types_nulls_and_metadata():
    table = batch_of(_rows(3)).replace_schema_metadata({"raysr": "1"})
    back = _from_ipc(pickle.loads(pickle.dumps(_to_ipc(table), protocol=5)))
    assert back.equals(table, check_metadata=True)
    assert back.schema.field("pixels").type == pa.large_binary()
    assert back.column("status").to_pylist() == ["error", None, "error"]


def test_a_slice_ships_only_its_own_bytes():
    big = batch_of(_rows(8, pixels_side=512))  # 8 × 768 KiB of pixels
    one = big.slice(5, 1)
    payload = _to_ipc(one)
    assert payload.size < 2 * 512 * 512 * 3
    assert _from_ipc(payload).equals(one)


def test_a_big_table_goes_out_of_band_without_a_copy():
    import ray.cloudpickle

    from raysr.job.transport import _IPC_MAX_BYTES

    big = batch_of(_rows(2, pixels_side=int((_IPC_MAX_BYTES / 3) ** 0.5) + 8))  # each output over the limit
    payload = _to_ipc(big)
    assert isinstance(payload, tuple)  # Ray's reducer, not a stream the pixels are copied into
    out_of_band: list = []
    blob = ray.cloudpickle.dumps(payload, protocol=5, buffer_callback=out_of_band.append)
    assert len(blob) < 1 << 20 and sum(memoryview(b).nbytes for b in out_of_band) >= big.nbytes
    assert _from_ipc(ray.cloudpickle.loads(blob, buffers=out_of_band)).equals(big)


def test_columns_without_rows_and_rows_without_columns():
    empty = batch_of([], ("item_id", "pixels"))
    assert _from_ipc(_to_ipc(empty)).schema == empty.schema
    no_columns = pa.table({"a": [1, 2, 3]}).drop_columns(["a"])
    assert _from_ipc(_to_ipc(no_columns)).num_rows == 3


class _Tagged(pa.ExtensionType):
    def __init__(self) -> None:
        super().__init__(pa.int64(), "raysr.test.tagged")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized) -> _Tagged:
        return cls()


def test_extension_types_keep_pyarrow_pickling():
    tagged = _Tagged()
    table = pa.table({"x": pa.ExtensionArray.from_storage(tagged, pa.array([1, 2]))})
    back = _from_ipc(pickle.loads(pickle.dumps(_to_ipc(table))))
    assert back.schema.field("x").type == tagged  # IPC alone would hand back plain int64


def test_tables_leave_a_ray_worker_as_ipc(ray_cluster):
    import ray

    from raysr.job import plan

    plan.init_ray(None)  # the session's Ray is up: this only installs the driver's side

    @ray.remote(num_cpus=0)
    def stage_output() -> tuple[pa.Table, bool]:
        import ray.cloudpickle

        table = batch_of(_rows(2))  # a stage builds its output: the worker installs IPC once
        return table, b"_from_ipc" in ray.cloudpickle.dumps(table)

    table, shipped_as_ipc = ray.get(stage_output.remote())
    assert shipped_as_ipc
    assert table.equals(batch_of(_rows(2)))
    import ray.cloudpickle

    sent = batch_of(_rows(4))  # the driver's side: plan.init_ray installed it
    assert b"_from_ipc" in ray.cloudpickle.dumps(sent)
    assert ray.get(ray.put(sent)).equals(sent)
