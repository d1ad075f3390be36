"""How Arrow tables travel between Ray workers: one Arrow IPC stream per table.

Every block of a job is an Arrow table of raysr's ~50 manifest and transient columns
(:mod:`raysr.stages._batch`). Ray's own reducer for ``pyarrow.Table`` rebuilds each
column's buffers in Python so that a slice does not ship its parent's whole buffer
(ARROW-10739); that costs ~2 ms per table of this width whatever its row count, which
for small items was a third of an upscale actor's time and a large share of every
post-stage task's. An Arrow IPC stream writes only a slice's own bytes as well and takes
~0.04 ms for the same table; it goes out of band as one buffer (pickle protocol 5), so a
block of big outputs is copied once into the stream and once into the object store.

:func:`install` registers it through Ray's public ``ray.util.register_serializer``;
the driver calls it when it joins Ray (:func:`raysr.job.plan.init_ray`) and each worker
the first time a stage builds a table there (:func:`raysr.stages._batch.batch_of`).
Tables the reader cannot rebuild from IPC alone (extension types, whose Python class
must be registered on both sides) keep pyarrow's own pickling.
"""

from __future__ import annotations

import pyarrow as pa


def _to_ipc(table: pa.Table) -> pa.Buffer | tuple:
    """``table`` as one Arrow IPC stream (or pyarrow's own reduce for extension types)."""
    if any(isinstance(field.type, pa.ExtensionType) for field in table.schema):
        return table.__reduce__()
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
