"""The manifest: one Parquet dataset per job, one row per input item per run.

This module owns the schema; every other module builds rows through
:func:`new_row` and reads them through :func:`read_manifest`. Rows are written
by the driver in part files (``run_id=<id>/part-NNNNN.parquet``), each written
whole then renamed, at most ``flush_interval_s`` apart: a killed job leaves every
row it finished until then and nothing half-written, and a million-item run
writes hundreds of parts, not one per batch. After each run the driver snapshots
every item's latest outcome (``_outcomes/<run_id>.parquet``, :func:`save_outcomes`),
so a resume reads the newest snapshot and the runs after it, not every run's rows.
Local paths and ``s3://`` URIs both work (pyarrow.fs).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

_LOG = logging.getLogger(__name__)
STATUSES = ("ok", "error", "skipped", "flagged")

_STAGES = ("read", "upscale", "faces", "color", "metrics", "write")
STAGE_COLUMNS = tuple(f"{stage}_s" for stage in _STAGES)  # seconds each stage spent on an item, in job order
_METRICS = ("lr_psnr", "lr_ssim", "sharpness", "delta_e", "ref_psnr", "ref_ssim")

SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("run_id", pa.string()),
        ("item_id", pa.string()),
        ("input_uri", pa.string()),
        ("input_size", pa.int64()),
        ("input_sha256", pa.string()),
        ("input_version", pa.string()),  # mtime_ns=… / etag=… at listing: skip without re-reading
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("channels", pa.int32()),
        ("bit_depth", pa.int32()),
        ("kind", pa.string()),  # image | video
        ("frames_in", pa.int64()),
        ("frames_out", pa.int64()),
        ("fps", pa.float64()),
        ("duration_s", pa.float64()),
        ("segments", pa.int32()),
        ("segment_index", pa.int32()),  # set on a video's per-segment rows (resume, per-segment timing)
        ("codec", pa.string()),
        ("route", pa.string()),
        ("route_reason", pa.string()),
        ("model", pa.string()),
        ("model_arch", pa.string()),
        ("weights_sha256", pa.string()),
        ("weights_source", pa.string()),
        ("weights_storage", pa.string()),
        ("precision", pa.string()),
        ("precision_fallback_tiles", pa.int32()),
        ("tile", pa.int32()),
        ("tile_pad", pa.int32()),
        ("tile_overlap", pa.int32()),
        ("color_method", pa.string()),
        ("ensemble", pa.string()),  # JSON list: model, weight, weights sha256 of each blended output
        ("face_model", pa.string()),
        ("face_count", pa.int32()),
        # images: JSON list (box, detector score, identity score, action per face);
        # videos: JSON counts (frames, frames with faces, tracks, faces per action; raysr.faces.video)
        ("faces", pa.string()),
        ("settings_hash", pa.string()),
        ("output_uri", pa.string()),
        ("output_size", pa.int64()),
        ("output_width", pa.int32()),
        ("output_height", pa.int32()),
        ("status", pa.string()),
        ("error_type", pa.string()),
        ("error_stage", pa.string()),
        ("error_message", pa.string()),
        ("flag_reasons", pa.string()),
        ("skip_reason", pa.string()),
        ("metadata_kept", pa.string()),
        ("notes", pa.string()),
        *[(column, pa.float64()) for column in STAGE_COLUMNS],
        *[(metric, pa.float64()) for metric in _METRICS],
        ("node_id", pa.string()),
        ("actor_id", pa.string()),
        ("raysr_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def new_row(**values) -> dict:
    """A manifest row with every column present (``None`` where not given).

    Raises:
        KeyError: for a column the schema does not have (catches typos at the source).
    """
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not manifest columns: {sorted(unknown)}")
    row = dict.fromkeys(COLUMNS)
    row.update(values)
    return row


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path for a manifest URI: local, ``s3://`` (the endpoint, region,
    retries and credential chain of :mod:`raysr.sources.s3`), or another pyarrow URI."""
    if uri.startswith("s3://"):
        from raysr.sources.s3 import arrow_filesystem

        return arrow_filesystem(uri)
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with manifest columns) → a table with exactly :data:`SCHEMA`."""
    return pa.Table.from_pylist([new_row(**row) for row in rows], schema=SCHEMA)


_MAX_PARTS_QUEUED = 10  # rows kept in memory while the manifest store fails: ~50 MB at the default part size


@dataclass
class ManifestWriter:
    """Appends rows of one run to the job's manifest dataset in part files.

    Example:
        >>> writer = ManifestWriter("/tmp/m", job_id="demo", run_id="r1")  # doctest: +SKIP
        >>> writer.append([new_row(item_id="a", status="ok")]); writer.flush()  # doctest: +SKIP
    """

    root: str
    job_id: str
    run_id: str
    rows_per_part: int = 5000
    # Rows finished since the last part are lost when the driver dies (those items are
    # redone on resume), so parts go out at least this often while rows arrive.
    flush_interval_s: float = 30.0

    def __post_init__(self) -> None:
        self._fs, self._base = _filesystem(self.root)
        self._dir = f"{self._base}/run_id={self.run_id}"
        if isinstance(self._fs, pafs.LocalFileSystem):  # object stores need no folder (pyarrow would PUT empty markers)
            self._fs.create_dir(self._dir, recursive=True)
        self._pending: list[dict] = []
        self._parts = self._failures = 0
        self._flushed_at = time.monotonic()
        self.rows_written = 0

    def append(self, rows: list[dict]) -> None:
        """Queue rows; a part is written once ``rows_per_part`` are queued or
        ``flush_interval_s`` has passed since the last one.

        A part that cannot be written (the store's bad minute, after its retries) is logged and
        its rows stay queued for the next attempt, ``flush_interval_s`` later; only when
        ``_MAX_PARTS_QUEUED`` parts' worth are waiting does the error end the run.
        """
        self._pending.extend({**row, "job_id": self.job_id, "run_id": self.run_id} for row in rows)
        due = time.monotonic() - self._flushed_at >= self.flush_interval_s
        if len(self._pending) >= self.rows_per_part * (self._failures + 1) or due:
            try:
                self.flush()
            except OSError as error:
                self._flushed_at, self._failures = time.monotonic(), self._failures + 1
                if len(self._pending) >= self.rows_per_part * _MAX_PARTS_QUEUED:
                    raise
                _LOG.warning("could not write a manifest part under %s (%s); its %d rows stay queued and the "
                             "next part tries again", self.root, error, len(self._pending))

    @property
    def rows_pending(self) -> int:
        """Rows queued for the next part (lost if the driver dies now)."""
        return len(self._pending)

    def flush(self) -> None:
        """Write every queued row as one part now."""
        self._flushed_at = time.monotonic()
        if not self._pending:
            return
        table = to_table(self._pending).drop_columns(["run_id"])  # the partition folder holds it
        _write_whole(self._fs, f"{self._dir}/part-{self._parts:05d}-{uuid.uuid4().hex[:8]}.parquet", table)
        self._parts, self._failures = self._parts + 1, 0
        self.rows_written += len(self._pending)
        self._pending = []


def _write_whole(filesystem: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write a Parquet file that readers see whole or not at all."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        temporary = f"{path.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
        pq.write_table(table, temporary, filesystem=filesystem)
        filesystem.move(temporary, path)
    else:  # object stores publish a PUT atomically
        pq.write_table(table, path, filesystem=filesystem)


def _runs_dataset(uri: str) -> pads.Dataset | None:
    """The manifest at ``uri`` as a dataset partitioned by ``run_id``; ``None`` before any row."""
    filesystem, base = _filesystem(uri)
    if filesystem.get_file_info(base).type == pafs.FileType.NotFound:
        return None
    partitioning = pads.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
    return pads.dataset(base, format="parquet", filesystem=filesystem, partitioning=partitioning,
                        exclude_invalid_files=True, ignore_prefixes=[".", "_"])


def _read_rows(dataset: pads.Dataset | None, columns: tuple[str, ...] | None, runs: list[str] | None = None) -> pa.Table:
    """Rows of ``dataset`` (of the given ``runs`` only, read from their files alone), typed by :data:`SCHEMA`."""
    wanted = [name for name in COLUMNS if columns is None or name in columns]
    if dataset is None:
        return pa.schema([SCHEMA.field(name) for name in wanted]).empty_table()
    present = [name for name in wanted if name in dataset.schema.names]
    where = pc.field("run_id").isin(pa.array(runs, pa.string())) if runs is not None else None
    return dataset.to_table(columns=present, filter=where).cast(pa.schema([SCHEMA.field(name) for name in present]))


def find_manifest(uri: str) -> str:
    """The manifest at ``uri``, or the one under it when ``uri`` is a job's output folder.

    Raises:
        FileNotFoundError: neither is there; the message says where jobs write theirs.
    """
    from raysr.job.spec import MANIFEST_LOCATION

    nested = f"{uri.rstrip('/')}/{MANIFEST_LOCATION}"
    for candidate in (nested, uri):
        filesystem, base = _filesystem(candidate)
        if filesystem.get_file_info(base).type != pafs.FileType.NotFound:
            return candidate
    raise FileNotFoundError(f"{uri}: no manifest there, nor at {nested}; a job writes its manifest to "
                            f"<output>/{MANIFEST_LOCATION} (or the spec's `manifest`), and `raysr run` prints "
                            "that path when it ends")


def read_manifest(uri: str, columns: tuple[str, ...] | None = None, runs: list[str] | None = None) -> pa.Table:
    """Every row of every run in the manifest at ``uri`` (empty table if none yet).

    ``columns``: read only these (those an older manifest lacks are left out), e.g. what a
    resume needs of a million rows instead of all of :data:`SCHEMA`. ``runs``: only these
    runs' rows, read from their own files alone.
    """
    return _read_rows(_runs_dataset(uri), columns, runs)


def iter_runs(uri: str, columns: tuple[str, ...] | None = None) -> Iterator[tuple[str, pa.Table]]:
    """Each run's rows in turn, ``(run_id, rows)``, in run id order: a manifest that nightly
    runs have grown to many times the archive is read one run at a time, not all at once."""
    dataset = _runs_dataset(uri)
    if dataset is None:
        return
    for run_id in sorted({_run_of(path) for path in dataset.files}):
        yield run_id, _read_rows(dataset, columns, [run_id])


_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)  # a run none of whose rows finished


def newest_run(finished: Mapping[str, dt.datetime | None]) -> str:
    """Of ``{run_id: its rows' last finish}``, the run that finished last: the one a report or
    summary calls the latest (no finish counts as oldest; a tie goes to the later run id)."""
    return max(finished, key=lambda run_id: (finished[run_id] or _NEVER, run_id))


def item_rows(table: pa.Table) -> pa.Table:
    """The rows that describe whole items (a video's per-segment rows left out)."""
    if table.num_rows == 0 or "segment_index" not in table.column_names:
        return table
    if table.column("segment_index").null_count == table.num_rows:  # no video segments: no copy
        return table
    return table.filter(pc.is_null(table.column("segment_index")))


def latest_rows(table: pa.Table, outcomes_first: bool = False) -> pa.Table:
    """The most recent row of each item (by ``finished_at``); per-segment rows are not items.

    ``outcomes_first``: an item's most recent row that is not ``skipped`` (a skip only points
    back at it), and its most recent skip only when it has no other row.
    """
    table = item_rows(table)
    if table.num_rows == 0:
        return table
    keys = {"item_id": table.column("item_id"), "finished_at": table.column("finished_at")}
    sort_keys = [("item_id", "ascending"), ("finished_at", "descending")]
    if outcomes_first:  # False sorts before True: an item's outcomes before its skips
        keys["skipped"] = pc.fill_null(pc.equal(table.column("status"), "skipped"), False)
        sort_keys.insert(1, ("skipped", "ascending"))
    order = pc.sort_indices(pa.table(keys), sort_keys=sort_keys)
    item_ids = table.column("item_id").take(order).combine_chunks()
    # The first row of each run of equal item ids (the newest of that item), without Python rows;
    # only the chosen rows are copied out of the table, once.
    first_of_item = pc.fill_null(pc.not_equal(item_ids.slice(1), item_ids.slice(0, len(item_ids) - 1)), True)
    return table.take(order.filter(pa.concat_arrays([pa.array([True]), first_of_item])))


def latest_outcomes(table: pa.Table) -> pa.Table:
    """The most recent row of each item that did work (``skipped`` rows only point back)."""
    if table.num_rows == 0:
        return table
    return latest_rows(table.filter(pc.not_equal(table.column("status"), "skipped")))


_OUTCOMES_KEEP = 2  # outcome snapshots kept: the newest, and the one before should it be unreadable
_COVERS = b"raysr_runs"  # snapshot metadata: JSON list of the runs whose rows it reflects


@dataclass(frozen=True)
class Outcomes:
    """The latest outcome of each item (:func:`latest_outcomes`) and the runs it reflects."""

    table: pa.Table
    runs: tuple[str, ...]


def _outcomes_dir(uri: str) -> tuple[pafs.FileSystem, str]:
    """Snapshots live in the manifest's folder, ``<manifest>/_outcomes/<run_id>.parquet``: its
    own whatever manifest path a job sets, and out of the dataset (``_`` names are skipped)."""
    filesystem, base = _filesystem(uri)
    return filesystem, f"{base.rstrip('/')}/_outcomes"


def _newest_snapshot(uri: str) -> Outcomes | None:
    filesystem, folder = _outcomes_dir(uri)
    found = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    for info in sorted((info for info in found if info.path.endswith(".parquet")), key=lambda i: i.path, reverse=True):
        try:
            table = pq.read_table(info.path, filesystem=filesystem)
            runs = tuple(json.loads(table.schema.metadata[_COVERS]))
        except Exception as error:  # noqa: BLE001 - a damaged snapshot costs time, never outcomes
            _LOG.warning("outcome snapshot %s is unreadable (%s); reading the runs it covered instead", info.path, error)
            continue
        return Outcomes(table.replace_schema_metadata(None), runs)
    return None


def read_outcomes(uri: str, columns: tuple[str, ...]) -> Outcomes:
    """The latest outcome of each item in the manifest at ``uri``, reading ``columns``.

    Starts from the newest snapshot (:func:`save_outcomes`) and reads only the runs it does
    not cover (a run killed before saving one, or a manifest from before snapshots), so a
    scheduled job's resume reads about one row per item, not one per item and run.
    """
    snapshot = _newest_snapshot(uri)
    covered = set(snapshot.runs) if snapshot else set()
    dataset = _runs_dataset(uri)
    present = {_run_of(path) for path in dataset.files} if dataset is not None else set()
    rows = _read_rows(dataset, columns, sorted(present - covered))
    if snapshot is not None and snapshot.table.num_rows:
        rows = pa.concat_tables([snapshot.table, rows], promote_options="default")
    return Outcomes(latest_outcomes(rows), tuple(sorted(covered | present)))


def save_outcomes(uri: str, run_id: str, columns: tuple[str, ...]) -> Outcomes:
    """Snapshot the latest outcomes after ``run_id`` (keeping the newest few), for the next resume."""
    outcomes = read_outcomes(uri, columns)
    filesystem, folder = _outcomes_dir(uri)
    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.create_dir(folder, recursive=True)
    table = outcomes.table.replace_schema_metadata({_COVERS: json.dumps(outcomes.runs).encode()})
    _write_whole(filesystem, f"{folder}/{run_id}.parquet", table)
    older = sorted(info.path for info in filesystem.get_file_info(pafs.FileSelector(folder))
                   if info.path.endswith(".parquet"))[:-_OUTCOMES_KEEP]
    for path in older:
        filesystem.delete_file(path)
    return outcomes


def _run_of(path: str) -> str:
    """``…/run_id=<id>/part-….parquet`` → ``<id>``."""
    return path.rsplit("/", 2)[-2].removeprefix("run_id=")
