"""Encoded segments kept on shared storage between the actors that encode them and the join.

A job encodes each segment of a video on whichever actor is free, into one folder
per (video, input digest, settings): ``NNNNN.nut`` plus a small JSON record of
what was encoded. Both are written under temporary names and renamed, the record
last, so a segment counts as done only when both are whole. A re-run that finds
the record and the file of the right size redoes only the other segments.

Records are JSON, never pickle: the folder lives beside the outputs, where other
people and programs can write.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from raysr.video.options import EncodeOptions
from raysr.video.probe import Segment
from raysr.video.segment import EncodedSegment, UpscaleFn, encode_segment

_RECORD_FIELDS = ("frames", "width", "height", "pix_fmt", "codec", "notes", "decode_s", "upscale_s", "encode_s")


class SegmentStore:
    """The encoded segments of one video, in ``folder`` (created on first write).

    Example:
        >>> store = SegmentStore("out/_raysr/segments/abc")  # doctest: +SKIP
        >>> done = store.load(segment)  # None until some actor encoded it  # doctest: +SKIP
        >>> encoded = done or store.encode("in.mp4", segment, upscale_fn, EncodeOptions())  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _paths(self, segment: Segment) -> tuple[Path, Path]:
        stem = f"{segment.index:05d}"
        return self.folder / f"{stem}.nut", self.folder / f"{stem}.json"

    def load(self, segment: Segment) -> EncodedSegment | None:
        """The segment as encoded by an earlier call, or ``None`` if it is missing or damaged."""
        video, record_path = self._paths(segment)
        try:
            record = json.loads(record_path.read_text())
            if record.get("start_pts") != segment.start_pts or record.get("size") != video.stat().st_size:
                return None
            fields = {name: record[name] for name in _RECORD_FIELDS}
        except (OSError, ValueError, KeyError):
            return None
        fields["notes"] = tuple(fields["notes"])
        return EncodedSegment(segment=segment, path=str(video), data=None, **fields)

    def encode(self, source: str | os.PathLike[str], segment: Segment, upscale_fn: UpscaleFn,
               options: EncodeOptions, temporal_strength: float = 0.0) -> EncodedSegment:
        """Encode ``segment`` into the store (file first, then its record; both renamed into place).

        ``temporal_strength``: see :func:`raysr.video.segment.encode_segment`.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        video, record_path = self._paths(segment)
        partial = video.with_name(f".{video.name}.{os.getpid()}.partial")
        try:
            encoded = encode_segment(source, segment, upscale_fn, options, partial, temporal_strength)
            os.replace(partial, video)
        finally:
            partial.unlink(missing_ok=True)
        encoded = replace(encoded, path=str(video))
        record = {name: getattr(encoded, name) for name in _RECORD_FIELDS}
        record["notes"] = list(encoded.notes)
        record.update(start_pts=segment.start_pts, size=video.stat().st_size)
        partial_record = record_path.with_name(f".{record_path.name}.{os.getpid()}.partial")
        partial_record.write_text(json.dumps(record))
        os.replace(partial_record, record_path)
        return encoded

    def remove(self) -> None:
        """Drop the folder once the joined video is published."""
        shutil.rmtree(self.folder, ignore_errors=True)
