"""``raysr manifest summary``: the latest run of a manifest in a few lines of text.

Reads only the latest run and only the columns it prints, counts in Arrow and turns only
the rows it shows into Python values, so a manifest of millions of items summarises in
seconds; the failures listed are capped (the HTML report lists more, the manifest has
every one).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from raysr.manifest import STATUSES, item_rows, iter_runs, newest_run, read_manifest

COLUMNS = ("job_id", "run_id", "segment_index", "status", "input_uri", "error_type", "error_message",
           "upscale_s", "started_at", "finished_at")


def read_latest_run(uri: str) -> tuple[pa.Table, int]:
    """The rows (:data:`COLUMNS`) of the manifest's latest run, the one that finished last, and
    how many runs the manifest holds; only the finish times of the other runs are read."""
    finished = {run_id: pc.max(rows.column("finished_at")).as_py()
                for run_id, rows in iter_runs(uri, ("finished_at",)) if rows.num_rows}
    if not finished:
        return read_manifest(uri, COLUMNS), 0
    return read_manifest(uri, COLUMNS, runs=[newest_run(finished)]), len(finished)


def summarize(table: pa.Table, *, slowest: int = 5, failures: int = 20, runs: int | None = None) -> dict:
    """Counts, throughput, the first ``failures`` failures (by input) and the ``slowest`` items of
    the latest run in ``table``; ``failures_total`` counts them all. ``runs``: how many runs the
    manifest holds, when ``table`` is only its latest (:func:`read_latest_run`).

    Example:
        >>> latest, runs = read_latest_run("out/_raysr/manifest")
        >>> print(format_summary(summarize(latest, runs=runs)))  # doctest: +SKIP
    """
    table = item_rows(table)
    if table.num_rows == 0:
        return {"rows": 0}
    ends = table.group_by("run_id").aggregate([("finished_at", "max")])
    run_id = newest_run(dict(zip(ends.column("run_id").to_pylist(), ends.column("finished_at_max").to_pylist())))
    run = table if ends.num_rows == 1 else table.filter(pc.equal(table.column("run_id"), run_id))
    found = {entry["values"]: entry["counts"] for entry in pc.value_counts(run.column("status")).to_pylist()}
    counts = {status: found.get(status, 0) for status in STATUSES}
    start = pc.min(run.column("started_at")).as_py()
    end = pc.max(run.column("finished_at")).as_py()
    wall_s = (end - start).total_seconds() if start and end else 0.0
    processed = counts["ok"] + counts["flagged"] + counts["error"]
    errors = run.filter(pc.equal(run.column("status"), "error")).select(["input_uri", "error_type", "error_message"])
    shown = errors.take(pc.sort_indices(errors, [("input_uri", "ascending")])[:failures])
    timed = run.select(["input_uri", "upscale_s"]).filter(pc.is_valid(run.column("upscale_s")))
    busiest = timed.take(pc.select_k_unstable(timed, slowest, [("upscale_s", "descending")])) if slowest else timed[:0]
    busiest = busiest.sort_by([("upscale_s", "descending")])
    return {
        "job_id": run.column("job_id")[0].as_py(),
        "run_id": run_id,
        "runs": runs or ends.num_rows,
        "rows": run.num_rows,
        **counts,
        "wall_s": round(wall_s, 2),
        "items_per_s": round(processed / wall_s, 3) if wall_s > 0 else None,
        "failures": shown.to_pylist(),
        "failures_total": errors.num_rows,
        "slowest": [{"input_uri": row["input_uri"], "upscale_s": round(row["upscale_s"], 3)}
                    for row in busiest.to_pylist()],
    }


def _without_prefix(message: str, uri: str) -> str:
    """Error messages start with their item's URI; the summary already shows it."""
    return message[len(uri) + 2:] if message.startswith(f"{uri}: ") else message


def format_summary(summary: dict) -> str:
    """The text ``raysr manifest summary`` prints."""
    if not summary.get("rows"):
        return "manifest is empty"
    lines = [
        f"job {summary['job_id']}  run {summary['run_id']}  ({summary['runs']} runs in manifest)",
        "  ".join(f"{status} {summary[status]}" for status in STATUSES) + f"  rows {summary['rows']}",
        f"wall {summary['wall_s']} s, {summary['items_per_s']} items/s",
    ]
    if summary["failures"]:
        lines.append("failures:")
        lines += [f"  {f['input_uri']}: [{f['error_type']}] {_without_prefix(f['error_message'] or '', f['input_uri'])}"
                  for f in summary["failures"]]
        hidden = summary["failures_total"] - len(summary["failures"])
        if hidden > 0:
            lines.append(f"  ... and {hidden:,} more: `raysr report` lists more, the manifest every one "
                         "(rows with status 'error')")
    if summary["slowest"]:
        lines.append("slowest:")
        lines += [f"  {s['upscale_s']:8.3f} s  {s['input_uri']}" for s in summary["slowest"]]
    return "\n".join(lines)
