"""How Arrow tables travel between Ray workers: one Arrow IPC stream per table.

Every block of a job is an Arrow table of raysr's ~50 manifest and transient columns
(:mod:`raysr.stages._batch`). Ray's own reducer for ``pyarrow.Table`` rebuilds each
column's buffers in Python so that a slice does not ship its parent's whole buffer
(ARROW-10739); that costs ~2 ms per table of this width whatever its row count, which
for small items was a third of an upscale actor's time and a large share of every
post-stage task's. An Arrow IPC stream writes only a slice's own bytes as well and takes
~0.07 ms for the same table. It copies the data once more, though (~0.8 ms for a 2048²
output's 12 MB, and a fresh allocation of that size), so a table holding more than
:data:`_IPC_MAX_BYTES` keeps Ray's reducer, which hands big buffers to the object store
without a copy.

:func:`install` registers this through Ray's public ``ray.util.register_serializer``;
the driver calls it when it joins Ray (:func:`raysr.job.plan.init_ray`) and each worker
the first time a stage builds a table there (:func:`raysr.stages._batch.batch_of`).
Tables the reader cannot rebuild from IPC alone (extension types, whose Python class
must be registered on both sides) keep pyarrow's own pickling.
"""

from __future__ import annotations

import pyarrow as pa

try:  # Ray's reducer for big tables (zero-copy); private, so its absence only costs a copy
    from ray._private.arrow_serialization import _arrow_table_reduce as _ray_reduce
except ImportError:  # pragma: no cover - depends on the Ray release
    _ray_reduce = None

#: Above this many buffer bytes a table keeps Ray's zero-copy reducer (IPC would copy it).
_IPC_MAX_BYTES = 8 << 20


def _to_ipc(table: pa.Table) -> pa.Buffer | tuple:
    """``table`` as one Arrow IPC stream; a ``(rebuild, arguments)`` reduce for big tables
    (Ray's) and for extension types (pyarrow's own)."""
    if any(isinstance(field.type, pa.ExtensionType) for field in table.schema):
        return table.__reduce__()
    # The buffers' total size, not nbytes: cheaper, and a slice counts its parent's (so goes to Ray).
    if _ray_reduce is not None and table.get_total_buffer_size() > _IPC_MAX_BYTES:
        return _ray_reduce(table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(payload: pa.Buffer | tuple) -> pa.Table:
    """The table :func:`_to_ipc` wrote; zero-copy over the received buffer."""
    if isinstance(payload, tuple):
        rebuild, arguments = payload
        return rebuild(*arguments)
    return pa.ipc.open_stream(payload).read_all()


def install() -> None:
    """Serialize ``pyarrow.Table`` as Arrow IPC in this process's Ray (call after ``ray.init``;
    cheap and idempotent: a reconnect re-registers Ray's own reducer, so call it again then)."""
    from ray.util import register_serializer

    register_serializer(pa.Table, serializer=_to_ipc, deserializer=_from_ipc)
