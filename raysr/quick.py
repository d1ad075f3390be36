"""`raysr upscale`: the one-machine path, one image or a folder, no Ray.

Runs the same decode → engine → encode steps as the Ray job's stages, in a
plain loop, so what a user sees here is what the cluster job produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from raysr.engine import EngineError, EngineOptions, Upscaler
from raysr.models.load import LoadedModel
from raysr.sinks.encode import EXTENSIONS, encode_image
from raysr.sinks.write import (
    UnsafePathError,
    UnwritableStreak,
    as_store_fault,
    colliding_outputs,
    output_relpath,
    write_atomic,
)
from raysr.sources.decode import DecodeError, decode_image, read_raysr_tag
from raysr.sources.listing import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, InputItem, is_video, list_local, output_extension


_READ_THREADS = 2  # decoders of the next images; a pool of their own, never queued behind encodes
_READ_AHEAD = 2  # images decoded ahead of the model
_MAX_ENCODE_THREADS = 32
_WRITE_BYTES_IN_FLIGHT = 2 << 30  # finished outputs held for the encoders, at most (one always may wait)
_ITEM_ERRORS = (DecodeError, EngineError, OSError, ValueError)  # UnsafePathError is a ValueError


@dataclass
class QuickReport:
    """Counts of a `raysr upscale` run; ``failures`` holds one line per failed file."""

    ok: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def _targets(input_path: Path, output_path: Path, extension: str) -> list[tuple[InputItem, Path | str]]:
    """(item, output path) per input, or (item, why it has no safe output path)."""
    if input_path.is_file():
        target = output_path
        if output_path.is_dir() or not output_path.suffix:
            target = output_path / output_relpath(input_path.name, output_extension(input_path.name, extension))
        return [(InputItem(str(input_path), input_path.name, input_path.stat().st_size), target)]
    if not input_path.is_dir():
        raise FileNotFoundError(f"input {input_path} does not exist")
    planned: list[tuple[InputItem, Path | str]] = []
    for item in list_local(str(input_path), IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
        try:
            planned.append((item, output_path / output_relpath(item.relative, output_extension(item.relative, extension))))
        except UnsafePathError as error:
            planned.append((item, str(error)))
    collisions = colliding_outputs([(item.uri, str(target)) for item, target in planned if isinstance(target, Path)])
    return [
        (item, f"{item.uri}: same output as {collisions[item.uri]}; rename one of them" if item.uri in collisions else target)
        for item, target in planned
    ]


def _encode_threads() -> int:
    """Encoders beside the model: one per usable core (at least 2, at most 32).

    On a GPU node the encoders, not the GPU, set the pace unless there are many: a 2048² PNG
    takes ~0.2 s of one core (raysr.sinks.encode), the compiled x4plus model ~0.05 s on an H200. OpenCV's
    encoder and zlib release the GIL, so threads scale with cores. On a CPU-only machine they
    share the cores with the model, which changes how the work is split, not how much there is.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # honours a container's or taskset's CPU set
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(2, min(cores, _MAX_ENCODE_THREADS))


def _settings_digest(model: LoadedModel, options: EngineOptions, fmt: str, quality: int) -> str:
    """12 hex digits of what decides an image output's bytes: model and weights, engine settings, format."""
    settings = {"model": model.spec.name, "weights": model.weights_sha256, "scale": model.spec.scale,
                "engine": options.settings(), "format": fmt, "quality": quality}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _done_before(item: InputItem, target: Path, digest: str) -> bool:
    """``target`` exists, is not older than its input, and its raysr tag names these settings.

    Outputs are written atomically, so one that exists is whole: an interrupted folder run,
    run again, goes on from the first image it had not finished.
    """
    try:
        if target.stat().st_mtime < Path(item.uri).stat().st_mtime:
            return False
    except OSError:
        return False
    return f" settings={digest} " in f" {read_raysr_tag(target) or ''} "


def _read_image(item: InputItem):
    return decode_image(Path(item.uri).read_bytes(), item.uri)


def _upscale_video(item: InputItem, target: Path, upscaler: Upscaler, temporal_strength: float) -> Future:
    """One video, done on this thread; a finished future, as an image's write is, for the same settling."""
    from raysr.video import upscale_video  # PyAV: the `video` extra

    done: Future = Future()
    try:
        upscale_video(item.uri, target, lambda frame: upscaler.upscale(frame).image,
                      temporal_strength=temporal_strength)
        done.set_result(None)
    except OSError as error:  # a full or read-only output store stops the run, as for images
        done.set_exception(as_store_fault(error, str(target)))
    except Exception as error:  # noqa: BLE001 - settled (and judged) by the caller
        done.set_exception(error)
    return done


def upscale_path(
    input_path: str | Path,
    output_path: str | Path,
    model: LoadedModel,
    options: EngineOptions,
    fmt: str = "png",
    quality: int = 95,
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
    temporal_strength: float = 0.0,
    force: bool = False,
) -> QuickReport:
    """Upscale one image or video, or every image and video under a folder into a mirrored tree.

    Videos keep their container and are encoded with raysr.video's defaults
    (libx264, crf 18), audio and subtitles copied; the job spec's ``video`` block
    sets these for `raysr run`.

    A file that cannot be read or upscaled is reported (one line naming it) and
    skipped; the rest continue. ``temporal_strength`` > 0 blends each video frame with the
    flow-warped previous output (:mod:`raysr.video.temporal`).

    An image whose output a run with the same settings already wrote (its raysr tag says
    so, and it is not older than the input) is skipped unless ``force``; videos are always redone.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    targets = _targets(input_path, output_path, EXTENSIONS[fmt])
    digest = _settings_digest(model, options, fmt, quality)
    report = QuickReport()
    if not force:
        todo = [(item, target) for item, target in targets
                if not (isinstance(target, Path) and not is_video(item.uri) and _done_before(item, target, digest))]
        report.skipped, targets = len(targets) - len(todo), todo
    upscaler = Upscaler(model, options)
    show = sys.stderr.isatty() if progress is None else progress

    def fail(item: InputItem, error: Exception) -> None:
        line = f"{item.uri}: {error}" if not str(error).startswith(item.uri) else str(error)
        report.failures.append(line)
        if on_error:
            on_error(line)

    def encode_and_write(target: Path, decoded, result) -> None:
        scale = result.image.shape[0] / decoded.pixels.shape[0]
        encoded = encode_image(result.image, fmt, quality, decoded.metadata, scale,
                               tag=f"raysr model={model.spec.name} settings={digest} precision={result.precision}")
        try:
            write_atomic(target, encoded.data)
        except OSError as error:
            raise as_store_fault(error, str(target)) from error

    unwritable = UnwritableStreak()  # a full disk stops the run instead of failing every image after it

    def settle(item: InputItem, written: Future) -> None:
        try:
            written.result()
            report.ok += 1
            unwritable.check([{"status": "ok"}])
        except _ITEM_ERRORS as error:
            fail(item, error)
            unwritable.check([{"status": "error", "error_type": getattr(error, "kind", None),
                               "error_message": report.failures[-1]}])

    # The model runs on this thread; reading + decoding the next images and encoding + writing
    # finished ones run on pools of their own (OpenCV and zlib release the GIL), so on a GPU the
    # model waits neither for a PNG encoder nor for a read queued behind one. Bounded: a few
    # reads ahead, and finished outputs up to one per encoder and _WRITE_BYTES_IN_FLIGHT.
    encode_threads = _encode_threads()
    with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="raysr-read") as readers, \
            ThreadPoolExecutor(encode_threads, thread_name_prefix="raysr-encode") as encoders:
        reads = [None if isinstance(target, str) or is_video(item.uri) else item for item, target in targets]
        pending_reads: dict[int, Future] = {}
        writes: deque[tuple[InputItem, Future, int]] = deque()

        def settle_oldest() -> None:
            written_item, written, _ = writes.popleft()
            settle(written_item, written)

        for index, (item, target) in enumerate(tqdm(targets, unit="img", disable=not show, file=sys.stderr)):
            for ahead in range(index, min(index + _READ_AHEAD + 1, len(targets))):
                if reads[ahead] is not None and ahead not in pending_reads:
                    pending_reads[ahead] = readers.submit(_read_image, reads[ahead])
            try:
                if isinstance(target, str):
                    raise UnsafePathError(target)
                if is_video(item.uri):
                    settle(item, _upscale_video(item, target, upscaler, temporal_strength))
                    continue
                decoded = pending_reads.pop(index).result()
                result = upscaler.upscale(decoded.pixels)
                writes.append((item, encoders.submit(encode_and_write, target, decoded, result), result.image.nbytes))
                while len(writes) > encode_threads or (
                        len(writes) > 1 and sum(nbytes for *_, nbytes in writes) > _WRITE_BYTES_IN_FLIGHT):
                    settle_oldest()
            except _ITEM_ERRORS as error:
                fail(item, error)
        while writes:
            settle_oldest()
    return report

