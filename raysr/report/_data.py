"""What the report shows, computed from manifest rows: numbers and lists, no HTML.

Two views of one manifest are used. The *state* of the archive is each item's
latest outcome (:func:`raysr.manifest.latest_rows` with ``outcomes_first``: a
``skipped`` row of a later run only points back at it, so after a nightly run
that changed nothing the report still shows every item's result): status counts,
failures, metrics, flagged items and the before/after sample. *Timing* (throughput, stage
seconds, actor load, wall time) describes the latest run only, because mixing
runs days apart would make items/s and the throughput bins meaningless.
Everything per item is reduced to bins and quartiles here, so the HTML's size
does not grow with the number of items.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysr.manifest import STAGE_COLUMNS, STATUSES, item_rows, iter_runs, latest_rows, newest_run, read_manifest

# Histogram order: the three first, then whichever others carry values.
METRIC_COLUMNS: tuple[str, ...] = ("lr_psnr", "sharpness", "delta_e", "ref_psnr", "lr_ssim", "ref_ssim")
# What the report reads of each row: not hashes, provenance or tile settings, which it never
# shows (on a million-row manifest, about half the memory and read time).
COLUMNS: tuple[str, ...] = (
    "job_id", "run_id", "item_id", "segment_index", "kind", "status", "input_uri", "output_uri",
    "width", "height", "output_width", "output_height", "route", "model", "precision",
    "error_type", "error_stage", "error_message", "flag_reasons",
    "frames_in", "frames_out", "fps", "duration_s", "segments", "codec",
    "node_id", "actor_id", "started_at", "finished_at", *STAGE_COLUMNS, *METRIC_COLUMNS,
)
# flag_reasons as the metrics stage writes them: "lr_psnr 15.2 < 20; delta_e 14.0 > 12"
_REASON = re.compile(r"(?P<metric>[a-z_]+) -?[\d.]+(?:e-?\d+)? (?P<op>[<>]) (?P<limit>-?[\d.]+(?:e-?\d+)?)")


@dataclass(frozen=True)
class ReportData:
    """The manifest's rows cut the ways the report needs them."""

    job_id: str | None
    run_id: str | None
    runs: int
    latest: pa.Table  # latest outcome per item (a skip only points back): the archive's state
    run: pa.Table  # every row of the latest run: its timing
    history: tuple[RunFacts, ...] = ()  # every run, oldest first


@dataclass(frozen=True)
class RunFacts:
    """What one run did, from its own rows: when, how long, and its rows' statuses."""

    run_id: str
    started: dt.datetime | None
    wall_s: float | None
    counts: dict[str, int]

    @property
    def processed(self) -> int:
        return self.counts["ok"] + self.counts["flagged"] + self.counts["error"]

    @classmethod
    def of(cls, run_id: str, rows: pa.Table) -> RunFacts:
        return cls(run_id, pc.min(rows.column("started_at")).as_py(), wall_seconds(rows), status_counts(rows))


def load(manifest_uri: str) -> ReportData:
    """Read the manifest at ``manifest_uri`` (local or ``s3://``); an absent one is empty.

    One run at a time: each run's rows are folded into one row per item, so a manifest that a
    year of nightly runs grew to 365 rows per item costs one run's rows of memory, not all.
    """
    state: pa.Table | None = None
    latest: tuple[str, dt.datetime | None, pa.Table] | None = None  # run id, last finish, rows: the newest so far
    history: list[RunFacts] = []
    for run_id, rows in iter_runs(manifest_uri, COLUMNS):
        rows = item_rows(rows)  # a video's per-segment rows are not items
        if rows.num_rows == 0:
            continue
        history.append(RunFacts.of(run_id, rows))
        finished = pc.max(rows.column("finished_at")).as_py()
        if latest is None or newest_run({latest[0]: latest[1], run_id: finished}) == run_id:
            latest = (run_id, finished, rows)
        both = rows if state is None else pa.concat_tables([state, rows], promote_options="default")
        state = latest_rows(both, outcomes_first=True)
    if latest is None or state is None:
        empty = read_manifest(manifest_uri, COLUMNS)
        return ReportData(None, None, 0, empty, empty)
    run_id, _, run = latest
    history.sort(key=lambda facts: (facts.started is not None, facts.started or 0, facts.run_id))
    return ReportData(run.column("job_id")[0].as_py(), run_id, len(history), state, run, tuple(history))


def floats(table: pa.Table, column: str) -> np.ndarray:
    """The column's non-null, finite values as float64 (empty if none)."""
    values = table.column(column).drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    return values[np.isfinite(values)]


def where(table: pa.Table, column: str, *values: str) -> pa.Table:
    """Rows whose ``column`` is one of ``values``."""
    return table.filter(pc.is_in(table.column(column), value_set=pa.array(values, pa.string())))


def status_counts(table: pa.Table) -> dict[str, int]:
    counted = value_counts(table, "status")
    return {status: counted.get(status, 0) for status in STATUSES}


def value_counts(table: pa.Table, column: str) -> dict[str, int]:
    """How often each value occurs, most common first; nulls as "—"."""
    counted: Counter[str] = Counter()
    for entry in pc.value_counts(table.column(column)).to_pylist():  # one entry per distinct value
        counted["—" if entry["values"] is None else str(entry["values"])] += entry["counts"]
    return dict(counted.most_common())


def wall_seconds(table: pa.Table) -> float | None:
    """First start to last finish, in seconds (None without both)."""
    if table.num_rows == 0:
        return None
    start, end = pc.min(table.column("started_at")).as_py(), pc.max(table.column("finished_at")).as_py()
    return (end - start).total_seconds() if start and end else None


def stage_stats(table: pa.Table) -> dict[str, dict[str, float]]:
    """Per stage with any timing: total, mean and the five numbers of a box plot (seconds)."""
    stats = {}
    for column in STAGE_COLUMNS:
        values = floats(table, column)
        if values.size:
            q0, q1, q2, q3, q4 = np.percentile(values, [0, 25, 50, 75, 100])
            stats[column] = {"total": float(values.sum()), "mean": float(values.mean()), "n": int(values.size),
                             "min": q0, "q1": q1, "median": q2, "q3": q3, "max": q4}
    return stats


def throughput(table: pa.Table, max_bins: int = 60) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Items finished per time bin, by status.

    Returns:
        bin starts (datetime64[us], UTC), counts per status (same length), bin width in seconds.
    """
    done = table.filter(pc.is_valid(table.column("finished_at")))
    if done.num_rows == 0:
        return np.array([], "datetime64[us]"), {}, 0.0
    times = done.column("finished_at").cast(pa.timestamp("us")).to_numpy().astype("datetime64[us]")
    first, last = times.min(), times.max()
    span_s = max((last - first) / np.timedelta64(1, "s"), 1.0)
    width_s = _nice_width(span_s / max_bins)
    edges_count = int(np.ceil(span_s / width_s)) + 1
    index = ((times - first) / np.timedelta64(1, "us") // (width_s * 1e6)).astype(np.int64)
    starts = first + (np.arange(edges_count) * width_s * 1e6).astype("timedelta64[us]")
    by_status = {}
    for status in STATUSES:
        mask = pc.fill_null(pc.equal(done.column("status"), status), False).to_numpy(zero_copy_only=False)
        if mask.any():
            by_status[status] = np.bincount(index[mask], minlength=edges_count)
    return starts, by_status, width_s


def _nice_width(seconds: float) -> float:
    """The smallest of 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 6, 12, 24 h ≥ ``seconds``."""
    for width in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if width >= seconds:
            return float(width)
    return float(np.ceil(seconds / 86400) * 86400)


def load_by(table: pa.Table, column: str) -> list[tuple[str, int, float]]:
    """(value of ``column``, items, upscale seconds) for each worker, busiest first.

    Ray's node and actor ids are long hex strings; their first 12 characters label the charts."""
    worked = table.filter(pc.is_valid(table.column(column)))  # not rows that never reached a worker
    labels = pc.utf8_slice_codeunits(worked.column(column), 0, 12)
    grouped = pa.table({"label": labels, "seconds": pc.fill_null(worked.column("upscale_s"), 0.0)}).group_by(
        "label").aggregate([("seconds", "count"), ("seconds", "sum")])
    return sorted(zip(grouped.column("label").to_pylist(), grouped.column("seconds_count").to_pylist(),
                      grouped.column("seconds_sum").to_pylist()), key=lambda entry: -entry[2])


def histogram(values: np.ndarray, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges; one bin around the value when all values are equal."""
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.histogram(values, bins=bins, range=(low, high))


def thresholds(table: pa.Table) -> dict[str, tuple[str, float]]:
    """Flag thresholds the run used, read back from ``flag_reasons`` (``{"lr_psnr": ("<", 20.0)}``).

    The manifest does not store the job spec; the reasons are the only record of
    the limits a run applied, so only limits that flagged something are known.
    """
    found: dict[str, tuple[str, float]] = {}
    for reasons in pc.unique(table.column("flag_reasons").drop_null()).to_pylist():
        for match in _REASON.finditer(reasons):
            found[match["metric"]] = (match["op"], float(match["limit"]))
    return found


def comparison_sample(table: pa.Table, count: int, kind: str = "image") -> list[dict]:
    """Up to ``count`` rows of ``kind`` (image, video) with an output to compare: the worst
    flagged first (lowest ``lr_psnr``), then ok items spread evenly through the manifest."""
    if count <= 0:
        return []
    # Positions first, on narrow columns; only the chosen rows are copied and become Python dicts
    # (a million-item manifest has a million ok rows).
    eligible = pc.and_kleene(pc.is_valid(table.column("output_uri")),
                             pc.equal(pc.fill_null(table.column("kind"), "image"), kind))
    flagged = _positions(pc.and_kleene(eligible, pc.equal(table.column("status"), "flagged")))
    ok = _positions(pc.and_kleene(eligible, pc.equal(table.column("status"), "ok")))
    worst = pc.sort_indices(table.select(["lr_psnr", "input_uri"]).take(flagged),
                            [("lr_psnr", "ascending"), ("input_uri", "ascending")]).to_numpy()
    chosen = flagged[worst[: max(count // 2, count - ok.size)]]
    wanted = count - chosen.size
    if ok.size and wanted > 0:
        by_name = ok[pc.sort_indices(table.column("input_uri").take(ok)).to_numpy()]
        chosen = np.concatenate([chosen, by_name[np.unique(np.linspace(0, ok.size - 1, num=min(wanted, ok.size))
                                                           .round().astype(int))]])
    return table.take(chosen).to_pylist()


def _positions(mask: pa.ChunkedArray) -> np.ndarray:
    """Row numbers where ``mask`` is true (null counts as false)."""
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
