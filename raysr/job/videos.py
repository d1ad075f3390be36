"""Videos in a job: one row per segment to the actors, one join per video on the driver.

The probe plans each video's segments (cut at keyframes). :meth:`VideoJoins.expand`
turns a pending video row into one row per segment still to encode, so one film's
segments spread over every actor of its route (on every node); segments already
in the video's :class:`~raysr.video.store.SegmentStore` from an earlier, killed run
are not sent again. As segment rows come back, :meth:`VideoJoins.take` records
them; when a video's last segment is in, it joins the segments without
re-encoding, verifies the result against the input and publishes it
(:func:`raysr.video.pipeline.finish_video`), and returns the video's row.

Segment rows go into the manifest too (``segment_index`` set, same ``item_id``):
per-segment node, actor, seconds and errors. Manifest readers skip them when
they count items (:func:`raysr.manifest.item_rows`).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from raysr.job.spec import JobSpec
from raysr.sinks.write import OutputUnwritableError, as_store_fault
from raysr.stages._batch import Row, fail
from raysr.storage import is_s3, publish_file, size_of
from raysr.video.errors import INPUT_FAULTS, VideoError
from raysr.video.probe import Segment
from raysr.video.remote import local_path
from raysr.video.segment import EncodedSegment
from raysr.video.store import SegmentStore

if TYPE_CHECKING:
    from raysr.video.pipeline import VideoResult


def segment_folder(spec: JobSpec, row: Row) -> str:
    """Where a video's encoded segments wait for the join: beside the outputs, one folder per
    (item, input content, settings), so a changed file or setting never reuses old segments."""
    return spec.state_uri(f"segments/{row['item_id']}-{row['input_sha256'][:12]}-{row['settings_hash']}")


@dataclass
class _Video:
    row: Row
    segments: list[Segment]
    store: SegmentStore
    encoded: dict[int, EncodedSegment] = field(default_factory=dict)
    errors: dict[int, tuple[str | None, str]] = field(default_factory=dict)  # index -> (error_type, message)
    seconds: dict[str, float] = field(default_factory=dict)
    faces: Counter = field(default_factory=Counter)  # summed face summaries of the segments

    @property
    def complete(self) -> bool:
        return len(self.encoded) + len(self.errors) == len(self.segments)


class VideoJoins:
    """Driver-side bookkeeping of the videos in flight. Construct once per run."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.videos: dict[str, _Video] = {}

    def expand(self, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        """Pending video rows → (one row per segment not yet in its store, finished video rows).

        A video whose segments are all stored already is joined right here.
        """
        to_process, finished = [], []
        for row in rows:
            segments: list[Segment] = pickle.loads(row.pop("video_plan"))
            video = _Video(row, segments, SegmentStore(segment_folder(self.spec, row)))
            self.videos[row["item_id"]] = video
            for segment in segments:
                stored = video.store.load(segment)
                if stored is not None:
                    video.encoded[segment.index] = stored
                    continue
                to_process.append({**row, "segment_index": segment.index, "video_segment": pickle.dumps(segment),
                                   "segment_dir": str(video.store.folder), "frames_in": segment.frame_count})
            if video.complete:
                finished.append(self._join(row["item_id"]))
        return to_process, finished

    def take(self, row: Row) -> Row | None:
        """Record a finished segment row; the video's own row once its last segment is in."""
        video = self.videos.get(row["item_id"])
        if video is None:
            return None
        index = row["segment_index"]
        for column in ("read_s", "upscale_s"):
            video.seconds[column] = video.seconds.get(column, 0.0) + (row.get(column) or 0.0)
        if row["status"] == "error":
            video.errors[index] = (row.get("error_type"), f"segment {index}: {row['error_message']}")
        else:
            stored = video.store.load(video.segments[index])
            if stored is None:
                video.errors[index] = (None, f"segment {index}: its encoded file is missing from {video.store.folder}")
            else:
                video.encoded[index] = stored
                video.row.update(precision=row.get("precision"), model_arch=row.get("model_arch"),
                                 weights_sha256=row.get("weights_sha256"), weights_source=row.get("weights_source"),
                                 weights_storage=row.get("weights_storage"), node_id=row.get("node_id"),
                                 actor_id=row.get("actor_id"))
                if row.get("face_model"):  # faces restored in this segment's frames (raysr.faces.video)
                    video.faces.update(json.loads(row.get("faces") or "{}"))
                    video.row.update(face_model=row["face_model"],
                                     face_count=(video.row.get("face_count") or 0) + (row.get("face_count") or 0))
        return self._join(row["item_id"]) if video.complete else None

    def unfinished(self) -> list[Row]:
        """Rows for videos whose segments never all came back (the run was cut short)."""
        return [self._fail(item_id, RuntimeError("not every segment came back from the actors; re-run the job "
                                                 "to encode only the missing segments"))
                for item_id in list(self.videos)]

    def _join(self, item_id: str) -> Row:
        video = self.videos[item_id]
        if video.errors:
            kind, message = video.errors[min(video.errors)]
            failed = f"{len(video.errors)} of {len(video.segments)} segments failed ({message})"
            if kind in INPUT_FAULTS:  # the file itself: a re-run would fail the same way
                return self._fail(item_id, VideoError(kind, failed, video.row.get("input_uri")), stage="upscale")
            if kind == OutputUnwritableError.kind:  # counts toward the streak that stops the run
                return self._fail(item_id, OutputUnwritableError(failed), stage="upscale")
            return self._fail(item_id, RuntimeError(f"{failed}; re-run the job to redo only the failed segments"),
                              stage="upscale")
        row = video.row
        try:
            with tempfile.TemporaryDirectory(prefix="raysr-join-") as work:
                result, output_size = self._join_in(video, Path(work))
        except Exception as error:  # noqa: BLE001 - the video fails, the job goes on
            return self._fail(item_id, as_store_fault(error, row["output_uri"]), stage="write")
        video.store.remove()
        del self.videos[item_id]
        row.update(video.seconds, status="ok", frames_out=result.frames, segments=result.segments,
                   codec=f"{result.info.codec}->{self.spec.video.codec}", output_size=output_size,
                   output_width=result.join.width, output_height=result.join.height,
                   write_s=result.join_s + result.verify_s, notes="; ".join(result.notes) or None)
        if video.faces:
            row["faces"] = json.dumps(dict(video.faces), separators=(",", ":"))
        return row

    @staticmethod
    def _join_in(video: _Video, work: Path) -> tuple[VideoResult, int]:
        """Join, verify and publish one video, with local copies of whatever lives on S3
        (input, segments, the output before its upload) in ``work``."""
        from raysr.video.pipeline import finish_video

        row = video.row
        source = local_path(row["input_uri"], row.get("input_version"))
        encoded = [video.store.fetch(video.encoded[segment.index], work) for segment in video.segments]
        output = row["output_uri"]
        if not is_s3(output):
            result = finish_video(source, video.segments[0].info, encoded, output)
            return result, size_of(output)
        local_output = work / PurePosixPath(output).name
        result = finish_video(source, video.segments[0].info, encoded, local_output)
        return result, publish_file(local_output, output)

    def _fail(self, item_id: str, error: BaseException, stage: str = "upscale") -> Row:
        video = self.videos.pop(item_id)
        row = fail(video.row, stage, error)
        row.update(video.seconds)
        return row
