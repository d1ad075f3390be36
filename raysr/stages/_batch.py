"""Rows in, rows out: helpers every stage shares.

Ray Data hands stages batches as ``dict[str, np.ndarray]``. Stages work on
rows (dicts), so a test can call them on a hand-made batch without Ray.
Images travel as bytes plus shape columns (never as ragged tensor columns),
and every failure becomes fields of the row, never an exception.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa

from raysr.imageops.resize import resize
from raysr.manifest import SCHEMA
from raysr.sources.decode import DecodedImage, decode_image

Row = dict
Batch = "pa.Table | dict[str, np.ndarray]"

#: Columns that only live between stages; the write stage drops them.
TRANSIENT_SCHEMA = pa.schema([
    ("relative", pa.string()),
    ("listed_size", pa.int64()),
    ("data", pa.binary()),
    ("pixels", pa.large_binary()),
    ("pixels_shape", pa.list_(pa.int64())),
    ("pixels_dtype", pa.string()),
    ("ensemble_pixels", pa.list_(pa.large_binary())),  # outputs of a route's ensemble members
    ("video_plan", pa.binary()),  # pickled list[Segment], probe → driver
    ("video_segment", pa.binary()),  # pickled Segment, driver → the actor that encodes it
    ("segment_dir", pa.string()),  # the video's SegmentStore folder
])
_FIELDS = {field.name: field for schema in (SCHEMA, TRANSIENT_SCHEMA) for field in schema}


def rows_of(batch) -> list[Row]:
    """A batch (Arrow table, or dict of equal-length arrays) as a list of row dicts."""
    if isinstance(batch, pa.Table):
        return batch.to_pylist()
    columns = list(batch)
    if not columns:
        return []
    count = len(batch[columns[0]])
    return [{column: _plain(batch[column][index]) for column in columns} for index in range(count)]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.tolist()
    return value


def batch_of(rows: list[Row], columns: tuple[str, ...] | None = None) -> pa.Table:
    """Rows → an Arrow table typed by the manifest and transient schemas.

    Explicit types matter: a column that is all ``None`` in one batch must stay
    a null string column, not become NaN floats.
    """
    _ship_tables_as_ipc()
    columns = columns or tuple(dict.fromkeys(key for row in rows for key in row))
    schema = pa.schema([_FIELDS[column] for column in columns])
    return pa.Table.from_pylist([{column: row.get(column) for column in columns} for row in rows], schema=schema)


_ipc_installed = False


def _ship_tables_as_ipc() -> None:
    """Inside a Ray worker, once: the tables stages return leave it as Arrow IPC streams
    (:mod:`raysr.job.transport`; Ray's own reducer costs ~2 ms per table of this width)."""
    global _ipc_installed
    ray = sys.modules.get("ray")
    if _ipc_installed or ray is None or not ray.is_initialized():
        return
    from raysr.job.transport import install

    install()
    _ipc_installed = True


class WorkerDiedError(RuntimeError):
    """The item's worker process died under it every time it was tried (:mod:`raysr.job.crashes`)."""

    kind = "worker_died"


def pending(row: Row) -> bool:
    """Still in flight: not failed, not skipped (``flagged`` items still get written)."""
    return row.get("status") in (None, "flagged")


def fail(row: Row, stage: str, error: BaseException) -> Row:
    """Turn an exception into the row's error fields."""
    kind = getattr(error, "kind", None) or type(error).__name__
    message = str(error).strip() or type(error).__name__
    uri = row.get("input_uri")
    if uri and not message.startswith(str(uri)):
        message = f"{uri}: {message}"
    if not isinstance(error, (ValueError, OSError, RuntimeError, TimeoutError)):
        # Not a failure raysr anticipated: keep the exception type and say where to look.
        message = f"unexpected {type(error).__name__} in the {stage} stage: {message} (a raysr bug; please report it with this manifest row)"
    row.update(status="error", error_type=kind, error_stage=stage, error_message=message[:2000])
    for column in ("data", "pixels", "ensemble_pixels", "video_plan", "video_segment"):
        row[column] = None
    return row


def pack_pixels(row: Row, pixels: np.ndarray) -> None:
    row["pixels"] = np.ascontiguousarray(pixels).tobytes()
    row["pixels_shape"] = list(pixels.shape)
    row["pixels_dtype"] = str(pixels.dtype)


def unpack_pixels(row: Row) -> np.ndarray:
    shape = tuple(int(size) for size in row["pixels_shape"])
    return np.frombuffer(row["pixels"], dtype=row["pixels_dtype"]).reshape(shape)


@contextmanager
def timed(row: Row, column: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        row[column] = (row.get(column) or 0.0) + time.perf_counter() - started


def worker_ids() -> tuple[str | None, str | None]:
    """(node id, actor id) when running inside Ray, else (hostname, pid)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        return context.get_node_id(), context.get_actor_id()
    return os.uname().nodename, f"pid-{os.getpid()}"


def map_rows(batch, process: Callable[[Row], Row]) -> pa.Table:
    return batch_of([process(row) for row in rows_of(batch)])


# The post stages (colour, metrics, write) run fused in one task, one row at a time, and each
# needs the decoded input and its bicubic upscale: the last of each is kept, read-only, and
# reused while its key (uri, input bytes[, size]) is the same: one build per item, not one per stage.
_kept: dict[str, tuple[tuple, object]] = {}


def _last_or_build(kind: str, key: tuple, build: Callable[[], object]) -> object:
    kept = _kept.get(kind)
    if kept is not None and kept[0] == key:
        return kept[1]
    value = build()
    _kept[kind] = (key, value)
    return value


def decode_input(row: Row, keep: bool = False) -> DecodedImage:
    """Decode an item's input bytes again; the probe already enforced size limits, so none apply here.

    ``keep=True`` is for the post stages: the last decode is kept (read-only, shared between
    stages) and reused while the uri and bytes are the same: one decode per item, not three.
    """
    uri, data = row["input_uri"], row["data"]
    if not keep:
        return decode_image(data, uri, max_pixels=1 << 62, min_side=1)

    def shared_decode() -> DecodedImage:
        decoded = decode_image(data, uri, max_pixels=1 << 62, min_side=1)
        decoded.pixels.flags.writeable = False  # shared between stages: nobody may change it
        return decoded

    return _last_or_build("decode", (uri, data), shared_decode)


def bicubic_reference(row: Row, size_hw: tuple[int, int]) -> np.ndarray:
    """The item's input upscaled with bicubic to ``size_hw`` (read-only, the input's dtype and channels).

    The colour stage corrects against it and the metrics stage measures colour shift against it;
    kept like :func:`decode_input` with ``keep=True``, so the fused post task builds it once per
    item, not twice (~5–9 ms of a 2048² output).
    """
    def build() -> np.ndarray:
        reference = resize(decode_input(row, keep=True).pixels, size_hw, "bicubic")
        reference.flags.writeable = False
        return reference

    return _last_or_build("bicubic", (row["input_uri"], row["data"], tuple(size_hw)), build)
