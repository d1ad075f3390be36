"""Encoded segments kept on shared storage between the actors that encode them and the join.

A job encodes each segment of a video on whichever actor is free, into one folder
per (video, input digest, settings): ``NNNNN.nut`` plus a small JSON record of
what was encoded. Both are written under temporary names and renamed, the record
last, so a segment counts as done only when both are whole. A re-run that finds
the record and the file of the right size redoes only the other segments.

Records are JSON, never pickle: the folder lives beside the outputs, where other
people and programs can write. The folder is a local path or an ``s3://`` prefix (for
jobs writing to S3): segments are encoded into a local temporary file and uploaded
whole, the record last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from raysr.sinks.write import WORK_FOLDER_PREFIX
from raysr.storage import is_s3, publish_file, read_bytes, size_of, write_bytes
from raysr.video.options import EncodeOptions
from raysr.video.probe import Segment
from raysr.video.segment import EncodedSegment, UpscaleFn, encode_segment

_RECORD_FIELDS = ("frames", "width", "height", "pix_fmt", "codec", "notes", "decode_s", "upscale_s", "encode_s")


class SegmentStore:
    """The encoded segments of one video, in ``folder`` (a local path or an ``s3://`` prefix).

    Example:
        >>> store = SegmentStore("out/_raysr/segments/abc")  # doctest: +SKIP
        >>> done = store.load(segment)  # None until some actor encoded it  # doctest: +SKIP
        >>> encoded = done or store.encode("in.mp4", segment, upscale_fn, EncodeOptions())  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = str(folder).rstrip("/")

    @property
    def remote(self) -> bool:
        return is_s3(self.folder)

    def _uris(self, segment: Segment) -> tuple[str, str]:
        stem = f"{self.folder}/{segment.index:05d}"
        return f"{stem}.nut", f"{stem}.json"

    def load(self, segment: Segment) -> EncodedSegment | None:
        """The segment as encoded by an earlier call, or ``None`` if it is missing or damaged."""
        video, record_uri = self._uris(segment)
        try:
            record = json.loads(read_bytes(record_uri))
            if record.get("start_pts") != segment.start_pts or record.get("size") != size_of(video):
                return None
            fields = {name: record[name] for name in _RECORD_FIELDS}
        except (OSError, ValueError, KeyError):
            return None
        fields["notes"] = tuple(fields["notes"])
        return EncodedSegment(segment=segment, path=video, data=None, **fields)

    def encode(self, source: str | os.PathLike[str], segment: Segment, upscale_fn: UpscaleFn,
               options: EncodeOptions, temporal_strength: float = 0.0,
               warm_up_fn: UpscaleFn | None = None) -> EncodedSegment:
        """Encode ``segment`` into the store (file first, then its record; each published whole).

        ``temporal_strength``, ``warm_up_fn``: see :func:`raysr.video.segment.encode_segment`.
        """
        video, record_uri = self._uris(segment)
        work = Path(tempfile.mkdtemp(prefix=WORK_FOLDER_PREFIX, dir=None if self.remote else self._local_folder()))
        try:
            partial = work / Path(video).name
            encoded = encode_segment(source, segment, upscale_fn, options, partial, temporal_strength, warm_up_fn)
            size = publish_file(partial, video)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        encoded = replace(encoded, path=video)
        record = {name: getattr(encoded, name) for name in _RECORD_FIELDS}
        record["notes"] = list(encoded.notes)
        record.update(start_pts=segment.start_pts, size=size)
        write_bytes(record_uri, json.dumps(record).encode())
        return encoded

    def _local_folder(self) -> str:
        os.makedirs(self.folder, exist_ok=True)
        return self.folder

    def fetch(self, encoded: EncodedSegment, folder: Path) -> EncodedSegment:
        """A copy of a stored segment in the local ``folder`` (for the join, when the store is on S3)."""
        if not self.remote:
            return encoded
        from raysr.storage import copy_to_local

        local = folder / Path(encoded.path).name
        copy_to_local(encoded.path, local)
        return replace(encoded, path=str(local))

    def remove(self) -> None:
        """Drop the folder once the joined video is published."""
        if not self.remote:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        from raysr.sources import s3

        for key, _ in list(s3.list_prefix(self.folder + "/")):
            bucket, _ = s3.split_uri(self.folder)
            s3.delete(f"s3://{bucket}/{key}")
