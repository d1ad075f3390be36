"""Read stages: probe every input (read, hash, validate, route, resume decision), then
re-read the bytes of the items that will be processed.

The probe's rows are small (no image bytes), so the driver can hold the
routing of a whole archive; bytes are read again right before the model, and
checked against the probe's hash so an input that changes mid-run is caught.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import pickle
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc

from raysr.imageops.content import classify_content
from raysr.job.spec import JobSpec
from raysr.manifest import now_utc
from raysr.sinks.encode import EXTENSIONS
from raysr.sources.decode import DecodeError, decode_image
from raysr.sources.listing import is_video, output_extension
from raysr.stages._batch import Batch, Row, WorkerDiedError, batch_of, fail, map_rows, rows_of, timed
from raysr.storage import output_uri, read_bytes, size_of


class InputChangedError(RuntimeError):
    kind = "input_changed"


def _hash_file(path: str) -> tuple[int, str]:
    """(size, sha256) of a local file, streamed: a film never sits in memory."""
    digest, size = hashlib.sha256(), 0
    with _reading(path), open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextmanager
def _reading(uri: str) -> Iterator[None]:
    """Turn the ways a listed file can fail to read into this item's DecodeError."""
    try:
        yield
    except FileNotFoundError:
        raise DecodeError("missing", f"{uri}: file disappeared after listing (deleted or moved); re-run the job") from None
    except PermissionError:
        raise DecodeError("unreadable", f"{uri}: permission denied; give the job's user read access") from None
    except IsADirectoryError:
        raise DecodeError("unreadable", f"{uri}: is a directory, not a file") from None
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise DecodeError("unreadable", f"{uri}: symbolic link loop (the link points back at itself); "
                          "replace the link with the file it should point to") from None


def _read(uri: str) -> bytes:
    with _reading(uri):
        return read_bytes(uri)


#: What resume decisions read of an item's last recorded outcome; the driver attaches these
#: columns to its listed row as ``last_<name>`` (:func:`attach_last_outcomes`).
LAST_COLUMNS = ("status", "input_sha256", "settings_hash", "weights_sha256", "output_uri", "output_size", "run_id",
                "input_version", "input_size", "route", "model", "kind")
#: What a resume reads of the manifest: enough to find each item's last outcome (by
#: ``finished_at``, videos' segment rows left out) and to judge it.
RESUME_COLUMNS = ("item_id", "finished_at", "segment_index", *LAST_COLUMNS)


def attach_last_outcomes(listing: pa.Table, done: pa.Table | None) -> pa.Table:
    """The listing with each item's last recorded outcome beside it, as ``last_*`` columns.

    ``done`` holds one row per item (:func:`raysr.manifest.latest_outcomes`). History then
    travels with the rows it concerns: a probe task gets its block's own, instead of every
    task unpickling and indexing the whole manifest (most of a 103 s resume of 20 000 items).
    """
    if done is None or done.num_rows == 0:
        return listing
    positions = pc.index_in(listing.column("item_id"), value_set=done.column("item_id"))
    history = done.select([name for name in LAST_COLUMNS if name in done.column_names]).take(positions)
    for name, column in zip(history.column_names, history.columns):
        listing = listing.append_column(f"last_{name}", column)
    return listing


def _last_outcome(row: Row) -> dict | None:
    """An item's last recorded outcome (its ``last_*`` fields), or ``None`` for a new item."""
    if row.get("last_status") is None:
        return None
    return {name: row.get(f"last_{name}") for name in LAST_COLUMNS}


class ProbeStage:
    """Read, hash, decode-validate and route each input; decide skip or process.

    Reads ``item_id, input_uri, relative`` and, when the item has a history, its
    ``last_*`` fields (:func:`attach_last_outcomes`); writes the item's identity, route,
    model, settings hash, output URI and, for failures or skips, the status.
    """

    reads = ("item_id", "input_uri", "relative", "listed_size", "input_version")
    writes = ("kind", "input_sha256", "input_size", "width", "height", "channels", "bit_depth", "route",
              "route_reason", "model", "settings_hash", "output_uri", "status", "skip_reason",
              "error_type", "error_stage", "error_message", "read_s", "started_at", "notes",
              "frames_in", "fps", "duration_s", "codec", "segments", "video_plan")

    def __init__(self, spec: JobSpec, weights_sha256: dict[str, str | None],
                 chain_digests: dict[str, str | None] | None = None) -> None:
        self.spec = spec
        self.weights_sha256 = weights_sha256  # route -> sha, to tell a model upgrade
        self.chain_digests = chain_digests or {}  # face restorer / ensemble member -> sha
        self.resume = spec.resume and not spec.force
        self.extension = EXTENSIONS[spec.output.format]

    def __call__(self, batch: Batch) -> Batch:
        # Every batch gets the same columns in the same order: a batch of images only and
        # one holding a video (frames_in, fps …) must concatenate on the driver.
        return batch_of([self.probe(row) for row in rows_of(batch)], self.reads + self.writes)

    def _route(self, row: Row, pixels) -> tuple[str, str]:
        override = self._route_override(row["relative"])
        if override:
            return override
        guess = classify_content(pixels)
        if guess.kind == "photo" and self.spec.faces is not None:  # videos: on their first frame
            from raysr.faces import has_faces

            found, reason = has_faces(pixels, self.spec.faces, self.spec.weights_dir)
            if found:
                return "faces", f"{guess.reason}; {reason}"
        return guess.kind, guess.reason

    def probe(self, row: Row) -> Row:
        if row.get("error_type") == WorkerDiedError.kind:
            return row  # it killed the probe's worker every time (raysr.job.crashes)
        row.update(started_at=now_utc(), status=None)
        if self._unchanged_by_listing(row):
            return row
        if is_video(row["input_uri"]):
            return self._probe_video(row)
        row["kind"] = "image"
        try:
            with timed(row, "read_s"):
                data = _read(row["input_uri"])
                row["input_size"] = len(data)
                row["input_sha256"] = hashlib.sha256(data).hexdigest()
                decoded = decode_image(data, row["input_uri"], self.spec.limits.max_pixels, self.spec.limits.min_side)
            pixels = decoded.pixels
            row.update(width=pixels.shape[1], height=pixels.shape[0], channels=decoded.channels,
                       bit_depth=decoded.bit_depth, notes="; ".join(decoded.metadata.notes) or None)
            row["route"], row["route_reason"] = self._route(row, pixels)
            row["model"] = self.spec.route_spec(row["route"]).model
            row["settings_hash"] = self._settings_hash(row["route"])
            row["output_uri"] = self._output_uri(row)
        except Exception as error:  # noqa: BLE001 - every failure becomes this item's error row
            return fail(row, "read", error)
        return self._decide(row, decoded.metadata.raysr_tag)

    def _probe_video(self, row: Row) -> Row:
        """Videos: stream-hash the file, probe streams and frames, route on the first frame."""
        row["kind"] = "video"
        try:
            from raysr.video.frames import first_frame_rgb
            from raysr.video.probe import plan_segments
            from raysr.video.remote import local_path

            with timed(row, "read_s"):
                local = str(local_path(row["input_uri"], row.get("input_version")))  # S3: this node's copy
                row["input_size"], row["input_sha256"] = _hash_file(local)
                plan = plan_segments(local, self.spec.video.segment_seconds)
                info = plan[0].info
            # The plan travels to the driver, which sends each segment to an actor. Pickle is safe
            # here: Ray moves it between raysr's own processes; it is never stored.
            row.update(segments=len(plan), video_plan=pickle.dumps(plan))
            rate = float(info.average_rate) if info.average_rate else None
            row.update(width=info.width, height=info.height, channels=3, bit_depth=info.bit_depth,
                       frames_in=info.frame_count, fps=rate, codec=info.codec,
                       duration_s=float((info.end_pts - info.first_pts) * info.time_base))
            row["route"], row["route_reason"] = self._route(row, first_frame_rgb(local))
            row["model"] = self.spec.route_spec(row["route"]).model
            row["settings_hash"] = self._settings_hash(row["route"])
            row["output_uri"] = self._output_uri(row)
        except Exception as error:  # noqa: BLE001
            return fail(row, "read", error)
        return self._decide(row, None)

    def _settings_hash(self, route: str) -> str:
        digests = {model: self.chain_digests.get(model) for model in self.spec.chain_models(route)}
        return self.spec.settings_hash(route, digests)

    def _output_uri(self, row: Row) -> str:
        """Images get the output format's extension; videos keep their container's."""
        return output_uri(self.spec.output.path, row["relative"], output_extension(row["relative"], self.extension))

    def _route_override(self, relative: str) -> tuple[str, str] | None:
        for override in self.spec.route_overrides:
            if fnmatch.fnmatch(relative, override.glob):
                return override.route, f"path matches {override.glob!r}"
        return None

    def _unchanged_by_listing(self, row: Row) -> bool:
        """Skip without reading when the store reports the same size and mtime/ETag as the
        last successful run, and model, settings and output are unchanged too.

        Scheduled reprocessing of a big bucket then touches only new or changed objects;
        anything not provably unchanged falls through to the content hash.
        """
        last = _last_outcome(row) if self.resume else None
        version = row.get("input_version")
        if (last is None or last["status"] not in ("ok", "flagged") or not version or self.spec.retry_failed_only
                or last.get("input_version") != version or last.get("input_size") != row.get("listed_size")):
            return False
        route = (self._route_override(row["relative"]) or (last["route"], ""))[0]
        if route != last["route"] or last["settings_hash"] != self._settings_hash(route) \
                or last["weights_sha256"] != self.weights_sha256.get(route):
            return False
        try:
            if last["output_uri"] != self._output_uri(row) or size_of(last["output_uri"]) != last["output_size"]:
                return False
        except Exception:  # noqa: BLE001 - cannot confirm: take the full path, which reports errors
            return False
        row.update(kind=last.get("kind"), input_sha256=last["input_sha256"], input_size=last["input_size"],
                   route=route, model=last["model"], settings_hash=last["settings_hash"], output_uri=last["output_uri"],
                   status="skipped",
                   skip_reason=f"unchanged since run {last.get('run_id')} (same size and {version.split('=')[0]}; not re-read)")
        return True

    def _decide(self, row: Row, raysr_tag: str | None) -> Row:
        if raysr_tag and not self.spec.force:
            row.update(status="skipped", skip_reason=f"input was made by raysr ({raysr_tag}); set force to redo")
            return row
        if self.spec.retry_failed_only:
            last = _last_outcome(row)
            if last is None or last["status"] != "error":
                row.update(status="skipped", skip_reason="not a failed item (retry_failed_only)")
                return row
        last = _last_outcome(row) if self.resume else None
        if last is None or last["status"] not in ("ok", "flagged"):
            return row
        same = (
            last["input_sha256"] == row["input_sha256"]
            and last["settings_hash"] == row["settings_hash"]
            and last["weights_sha256"] == self.weights_sha256.get(row["route"])
            and last["output_uri"] == row["output_uri"]
        )
        if not same or last["output_size"] is None:
            return row
        try:
            existing = size_of(row["output_uri"])
        except Exception as error:  # noqa: BLE001 - e.g. access denied on HEAD: this item, not the job
            return fail(row, "read", error)
        if existing == last["output_size"]:
            row.update(status="skipped", skip_reason=f"unchanged since run {last.get('run_id')}")
        return row


class ReadBytesStage:
    """Re-read an item's bytes right before the model and check they match the probe.

    Reads ``input_uri, input_sha256``; writes ``data``.
    """

    reads = ("input_uri", "input_sha256")
    writes = ("data",)

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.read)

    def read(self, row: Row) -> Row:
        if row.get("kind") == "video":
            return row  # the upscale actor streams the file itself
        try:
            with timed(row, "read_s"):
                data = _read(row["input_uri"])
            if hashlib.sha256(data).hexdigest() != row["input_sha256"]:
                raise InputChangedError(f"{row['input_uri']}: content changed during the run; re-run the job")
            row["data"] = data
        except Exception as error:  # noqa: BLE001
            return fail(row, "read", error)
        return row
