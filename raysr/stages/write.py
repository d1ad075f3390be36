"""The write stage: encode with the input's metadata, write atomically, return a manifest row."""

from __future__ import annotations

from raysr import __version__
from raysr.manifest import COLUMNS, now_utc
from raysr.sinks.encode import encode_image
from raysr.sinks.write import as_store_fault
from raysr.stages._batch import Batch, Row, batch_of, decode_input, fail, pending, rows_of, timed, unpack_pixels
from raysr.storage import write_bytes


class WriteStage:
    """Reads ``pixels, data, output_uri``; writes ``output_size`` and finishes the row.

    Output rows carry manifest columns only: the image bytes stop here.
    """

    reads = ("pixels", "pixels_shape", "pixels_dtype", "data", "output_uri")
    writes = ("output_size", "output_width", "output_height", "metadata_kept", "write_s", "finished_at", "status")

    def __init__(self, fmt: str, quality: int) -> None:
        self.fmt, self.quality = fmt, quality

    def __call__(self, batch: Batch) -> Batch:
        return batch_of([self.write(row) for row in rows_of(batch)], COLUMNS)

    def write(self, row: Row) -> Row:
        if pending(row) and row.get("kind") == "video":
            return self._finish_video(row)
        if pending(row):
            try:
                with timed(row, "write_s"):
                    output = unpack_pixels(row)
                    metadata = decode_input(row, keep=True).metadata
                    encoded = encode_image(
                        output, self.fmt, self.quality, metadata, scale=output.shape[0] / row["height"],
                        tag=f"raysr {__version__} model={row['model']} item={row['item_id']}",
                    )
                    row["output_size"] = write_bytes(row["output_uri"], encoded.data)
                lossy = f"lossy {self.fmt} at quality {self.quality}" if self.fmt in ("jpg", "webp") and self.quality < 100 else None
                row.update(output_height=output.shape[0], output_width=output.shape[1],
                           metadata_kept=",".join(encoded.kept) or None,
                           notes="; ".join(filter(None, [row.get("notes"), lossy, *encoded.notes])) or None)
                if row["status"] is None:
                    row["status"] = "ok"
            except Exception as error:  # noqa: BLE001
                fail(row, "write", as_store_fault(error, row["output_uri"]))
        return finish(row)


    @staticmethod
    def _finish_video(row: Row) -> Row:
        """A video's segment row: its segment is encoded into the store; the driver joins."""
        if row["status"] is None:
            row["status"] = "ok"
        return finish(row)


def finish(row: Row) -> Row:
    """Stamp a row as final and keep only manifest columns (also for rows that never got here)."""
    row.update(finished_at=now_utc(), raysr_version=__version__)
    return {column: row.get(column) for column in COLUMNS}
