"""`raysr run`: the driver. List → probe → write error/skip rows → process → reconcile.

The driver never holds image data: it holds the listing (columnar), the probe's
small rows, and writes manifest rows as they stream back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from raysr.job.lease import Lease
from raysr.job.progress import Progress
from raysr.job.spec import JobSpec
from raysr.job.videos import VideoJoins
from raysr.manifest import ManifestWriter, read_outcomes, save_outcomes
from raysr.models.registry import get_spec, is_registered
from raysr.sinks.write import UnwritableStreak, colliding_outputs, sweep_partials
from raysr.sources.listing import list_local
from raysr.stages._batch import batch_of
from raysr.stages.read import RESUME_COLUMNS
from raysr.stages.write import finish
from raysr.storage import is_s3, write_bytes
from raysr.weights.resolve import resolve_weights


@dataclass
class RunReport:
    """What a run did. ``exit_code`` is what `raysr run` returns."""

    job_id: str
    run_id: str
    listed: int = 0
    counts: Counter = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    estimates: list = field(default_factory=list)
    actors: str = ""  # dry run: the model actors the run would start (actors.actors_line)
    wall_s: float = 0.0
    manifest_uri: str = ""
    report_uri: str | None = None  # the HTML report written after the run (output.report)
    dry_run: bool = False
    allow_errors: bool = False

    @property
    def exit_code(self) -> int:
        if self.missing:
            return 3
        if self.counts["error"] and not self.allow_errors:
            return 1
        return 0

    def line(self) -> str:
        counts = ", ".join(f"{self.counts[s]} {s}" for s in ("ok", "flagged", "skipped", "error"))
        report = f", report {self.report_uri}" if self.report_uri else ""
        return f"{self.listed} inputs: {counts} in {self.wall_s:.1f} s -> manifest {self.manifest_uri}{report}"


def item_id(uri: str) -> str:
    """Stable id of an input: a hash of its URI."""
    return hashlib.sha256(uri.encode()).hexdigest()[:20]


def list_inputs(spec: JobSpec) -> pa.Table:
    """The listing as a columnar table (deduplicated: an input listed twice is one item)."""
    extensions = tuple(spec.extensions)
    uris, relatives, sizes, versions, seen = [], [], [], [], set()
    for pattern in spec.inputs:
        if pattern.startswith("s3://"):
            from raysr.sources.s3 import list_items

            items = list_items(pattern, extensions)
        else:
            items = list_local(pattern, extensions)
        for item in items:
            if item.uri not in seen:
                seen.add(item.uri)
                uris.append(item.uri)
                relatives.append(item.relative)
                sizes.append(item.size)
                versions.append(item.version)
    return pa.table({
        "item_id": pa.array([item_id(uri) for uri in uris], pa.string()),
        "input_uri": pa.array(uris, pa.string()),
        "relative": pa.array(relatives, pa.string()),
        "listed_size": pa.array(sizes, pa.int64()),
        "input_version": pa.array(versions, pa.string()),
    })


def _model_digest(model: str, weights_dir: str | None) -> str | None:
    """Resolve a model's weights on the driver (fail fast, before any cluster work) and return
    their sha256; ``None`` for classical resizers."""
    if is_registered(model) and get_spec(model).is_classical:
        return None
    if is_registered(model) and get_spec(model).arch == "diffusers":
        from raysr.weights.hub import resolve_snapshot

        return resolve_snapshot(model, weights_dir).sha256
    return resolve_weights(model, weights_dir).sha256


def _weights_by_route(spec: JobSpec) -> dict[str, str | None]:
    """route → digest of its main model's weights, to tell a model upgrade on resume."""
    return {route: _model_digest(spec.route_spec(route).model, spec.weights_dir) for route in spec.active_routes()}


def _chain_digests(spec: JobSpec) -> dict[str, str | None]:
    """model → weights digest for every face restorer, face detector and ensemble member of the job."""
    models = {model for route in spec.active_routes() for model in spec.chain_models(route)}
    if spec.faces is not None and spec.faces.detector == "retinaface":
        models.add("retinaface_resnet50")  # into the cache now: the actors' detectors read only the cache
    return {model: _model_digest(model, spec.weights_dir) for model in sorted(models)}


def _refuse_output_collisions(probed: pa.Table) -> pa.Table:
    """Two inputs must never write one output (``a.jpg`` and ``a.png`` → ``a.png``): the later fails."""
    live = probed.filter(pc.is_valid(probed.column("output_uri")))
    losers = colliding_outputs(list(zip(live.column("input_uri").to_pylist(), live.column("output_uri").to_pylist())))
    if not losers:
        return probed
    rows = probed.to_pylist()
    for row in rows:
        winner = losers.get(row["input_uri"])
        if winner is not None and row["status"] is None:
            row.update(status="error", error_type="output_collision", error_stage="read",
                       error_message=f"{row['input_uri']}: its output {row['output_uri']} is also the output of "
                                     f"{winner}; rename one of them or write to another folder")
    return pa.Table.from_pylist(rows, schema=probed.schema)


_LOG = logging.getLogger(__name__)


def _snapshot_outcomes(spec: JobSpec, run_id: str) -> None:
    """Save every item's latest outcome for the next run's resume (:func:`raysr.manifest.save_outcomes`).

    The manifest's rows stay the record: a snapshot that cannot be written only makes the
    next resume read more of them, so it is a warning, not a failed run.
    """
    try:
        save_outcomes(spec.manifest_uri, run_id, RESUME_COLUMNS)
    except Exception as error:  # noqa: BLE001
        _LOG.warning("could not save the outcome snapshot beside %s (%s); the next resume reads every run's rows",
                     spec.manifest_uri, error)


def _write_report(spec: JobSpec) -> str | None:
    """Write the job's HTML report (:mod:`raysr.report`) beside its lease, ``<output>/_raysr/report.html``.

    Like the snapshot, it is a view of the manifest: one that cannot be written (the ``report``
    extra not installed, a store refusing it) is a warning, and the run's outputs and rows stand.
    """
    target = spec.state_uri("report.html")
    try:
        from raysr.report import render_report

        write_bytes(target, render_report(spec.manifest_uri).encode("utf-8"))
    except Exception as error:  # noqa: BLE001
        _LOG.warning("could not write the report %s (%s: %s); `raysr report %s` writes it by hand",
                     target, type(error).__name__, error, spec.manifest_uri)
        return None
    return target


def run_job(spec: JobSpec, address: str | None = None, dry_run: bool = False,
            progress: bool | None = None) -> RunReport:
    """Run (or with ``dry_run`` only plan) a job; returns the report. See the module docstring.

    A run holds a lease on its output (:mod:`raysr.job.lease`): a second run on the same
    output fails fast with :class:`~raysr.job.lease.LeaseHeldError` instead of racing it.
    """
    started = time.perf_counter()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    report = RunReport(spec.name, run_id, manifest_uri=spec.manifest_uri, dry_run=dry_run,
                       allow_errors=spec.allow_errors)
    weights = _weights_by_route(spec)
    chain_digests = _chain_digests(spec)
    lease = None if dry_run else Lease(lease_uri(spec), run_id).acquire()
    try:
        if lease is not None and lease.took_over_from is not None and not is_s3(spec.output.path):
            _sweep_partials(spec, lease.took_over_from)  # inside: a sweep that fails still releases the lease
        return _run(spec, address, dry_run, progress, report, (weights, chain_digests), lease, started)
    finally:
        if lease is not None:
            lease.release()


def _sweep_partials(spec: JobSpec, dead_run: str) -> None:
    """Remove what the writers of ``dead_run`` were killed in the middle of (S3 puts are whole or absent)."""
    removed = sweep_partials(spec.output.path)
    if removed:
        _LOG.warning("removed %d partial files left in %s by run %s, which died while writing them",
                     removed, spec.output.path, dead_run)


def _process(spec: JobSpec, probed: pa.Table | None, rows_per_part: int, emit: Callable[[list[dict]], None]) -> None:
    """Hand every settled row to ``emit``, run the pending items through the process pass, join the videos."""
    from raysr.job import plan

    videos = VideoJoins(spec)
    pending_by_route: dict[str, pa.Table] = {}
    if probed is not None:
        probed = _refuse_output_collisions(probed)
        is_pending = pc.is_null(probed.column("status"))
        # A resumed archive: a million skip rows, handed to the writer a part's worth at a time.
        for settled in probed.filter(pc.invert(is_pending)).to_batches(max_chunksize=rows_per_part):
            emit([finish(row) for row in settled.to_pylist()])
        pending = probed.filter(is_pending)
        is_video = pc.fill_null(pc.equal(pending.column("kind"), "video"), False)
        # Only videos leave Arrow (to be cut into segment rows): a million images stay columnar.
        segment_rows, joined = videos.expand(pending.filter(is_video).to_pylist())
        emit([finish(row) for row in joined])
        images = pending.filter(pc.invert(is_video))
        for route in spec.active_routes():
            parts = [images.filter(pc.equal(images.column("route"), route))]
            segments = [row for row in segment_rows if row["route"] == route]
            if segments:
                parts.append(batch_of(segments))
            pending_by_route[route] = pa.concat_tables(parts, promote_options="default")
    for batch in plan.process(pending_by_route, spec):
        rows = batch.to_pylist()
        joined = [videos.take(row) for row in rows if row.get("segment_index") is not None]
        emit(rows + [finish(row) for row in joined if row is not None])
    emit([finish(row) for row in videos.unfinished()])


def _flush_on_the_way_out(writer: ManifestWriter) -> None:
    try:
        writer.flush()
    except Exception as error:  # noqa: BLE001 - the error that stopped the run matters more
        _LOG.warning("could not record the last %d rows in %s (%s); those items are redone on resume",
                     writer.rows_pending, writer.root, error)
    else:
        _LOG.warning("stopped early: %d rows recorded in %s; run the job again to resume", writer.rows_written,
                     writer.root)


def _progress_mode(progress: bool | None) -> str:
    """``None``: a line on a terminal, a log line a minute elsewhere (a submitted job's log)."""
    if progress is None:
        return "line" if sys.stderr.isatty() else "log"
    return "line" if progress else "off"


def lease_uri(spec: JobSpec) -> str:
    """Where the lease on a job's output lives: beside its outputs, under ``_raysr/``."""
    return spec.state_uri("lease.json")


def _run(spec: JobSpec, address: str | None, dry_run: bool, progress: bool | None, report: RunReport,
         digests: tuple[dict, dict], lease: Lease | None, started: float) -> RunReport:
    from raysr.job import actors, plan  # import Ray: only when a job actually runs

    listing = list_inputs(spec)
    report.listed = listing.num_rows
    done = read_outcomes(spec.manifest_uri, RESUME_COLUMNS).table
    # A local Ray gets logical CPUs enough for every pool's actors (each asks for this machine's
    # cores when no GPU is there) plus the read and write tasks; the OS shares the real cores.
    per_actor = spec.resources.cpus_per_actor or float(os.cpu_count() or 1)
    actor_count = (spec.resources.actors_per_model or 1) * actors.actor_pool_count(spec, spec.active_routes())
    plan.init_ray(address, logical_cpus=math.ceil(per_actor * actor_count) + 2)

    probed = (pa.concat_tables(list(plan.probe(listing, spec, *digests, done)), promote_options="default")
              if listing.num_rows else None)
    if dry_run:
        statuses = probed.column("status").to_pylist() if probed is not None else []
        report.counts.update("process" if status is None else status for status in statuses)
        if report.counts["process"]:
            from raysr.job.estimate import estimate

            pending = probed.filter(pc.is_null(probed.column("status")))
            report.estimates = estimate(spec, pending)
            layout, cpus = actors.plan_actors(spec, dict(Counter(pending.column("route").to_pylist())))
            why_not = actors.unplaceable(actors.actor_bundle(spec, layout, cpus), actors.alive_nodes())
            report.actors = actors.actors_line(layout, cpus) + (f"; {why_not} (yet)" if why_not else "")
        report.wall_s = time.perf_counter() - started
        return report

    writer = ManifestWriter(spec.manifest_uri, job_id=spec.name, run_id=report.run_id)
    tracker = Progress(listing.num_rows, _progress_mode(progress))
    written: Counter = Counter()
    unwritable = UnwritableStreak()

    def emit(rows: list[dict]) -> None:
        lease.renew()
        items = [row for row in rows if row.get("segment_index") is None]
        writer.append(rows)  # a video's segment rows are recorded too, but are not items
        written.update(row["item_id"] for row in items)
        tracker.add([row["status"] for row in items])
        unwritable.check(items)

    try:
        _process(spec, probed, writer.rows_per_part, emit)
    except BaseException:
        # Ctrl-C, `raysr stop`, a failed stage: the rows that did arrive are true (their outputs
        # are written), so they are kept and the resume skips those items instead of redoing them.
        tracker.close()
        _flush_on_the_way_out(writer)
        raise
    writer.flush()
    tracker.close()
    _snapshot_outcomes(spec, report.run_id)
    if spec.output.report:
        report.report_uri = _write_report(spec)

    # Reconcile: every listed item has exactly one row in this run.
    listed_ids = listing.column("item_id").to_pylist()
    report.missing = [uri for uri, item in zip(listing.column("input_uri").to_pylist(), listed_ids) if written[item] != 1]
    report.counts = tracker.counts
    report.wall_s = time.perf_counter() - started
    return report
