"""The upscale stage: one model per actor, loaded once, run on every item routed to it."""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING

from raysr.engine import EngineOptions
from raysr.engine.thread import ModelThread
from raysr.job.spec import DiffusionSpec, FacesSpec, VideoSpec
from raysr.models.registry import get_spec, is_registered
from raysr.sinks.write import as_store_fault
from raysr.stages._batch import Batch, Row, decode_input, fail, map_rows, pack_pixels, pending, timed, worker_ids

if TYPE_CHECKING:
    from raysr.engine import Upscaler


def _provenance(arch: str, weights, weights_sha256: str | None, tile_pad: int, tile_overlap: int) -> dict:
    """The manifest columns that say which weights and settings made an output."""
    return {
        "model_arch": arch,
        "weights_sha256": weights_sha256 or None,
        "weights_source": weights.source if weights else None,
        "weights_storage": weights.storage if weights else None,
        "tile_pad": tile_pad,
        "tile_overlap": tile_overlap,
    }


def _network_upscaler(model: str, engine: EngineOptions, weights_dir: str | None) -> tuple[Upscaler, dict]:
    # torch and spandrel load here, in the actor: the driver plans the job without them.
    from raysr.engine import Upscaler
    from raysr.models.load import load_model

    loaded = load_model(model, weights_dir, denoise_strength=engine.denoise_strength)
    # loaded.weights_sha256, not loaded.weights.sha256: a denoise-strength blend has its own digest.
    return Upscaler(loaded, engine), _provenance(loaded.arch, loaded.weights, loaded.weights_sha256,
                                                 engine.tile_pad, engine.tile_overlap)


def _diffusion_upscaler(model: str, engine: EngineOptions, weights_dir: str | None,
                        diffusion: DiffusionSpec | None):
    """SD x4 through diffusers: tiles, seeds and steps come from the job's ``diffusion`` section."""
    from raysr.diffusion import DiffusionUpscaler

    diffusion = diffusion or DiffusionSpec()
    upscaler = DiffusionUpscaler(model, diffusion, weights_dir=weights_dir, precision=engine.precision)
    weights = upscaler.weights
    return upscaler, _provenance("diffusers", weights, weights.sha256 if weights else None, 0, diffusion.tile_overlap)


class UpscaleStage:
    """Decode an item's bytes and run the model. Construct once per actor.

    Reads ``data, input_uri``; writes the output pixels and the engine's provenance.
    In a route with a face model, video segments also get their faces restored here,
    frame by frame (:mod:`raysr.faces.video`): frames never leave this actor, so the
    restorer is loaded beside the model on the first such segment. Images keep the
    restorer in a pool of its own (:class:`raysr.stages.faces.FaceStage`).

    Two calls run at once in each actor (``concurrent_calls``; the plan asks Ray Data for
    it): one item's decode, output packing and hand-over to Ray overlap the other's model
    call, so a GPU does not idle through them. The model is loaded and run on one thread of
    its own (:class:`~raysr.engine.thread.ModelThread`: on a CPU, PyTorch called from two
    threads runs ~1.3× slower), one call at a time, so device memory holds one image's tiles
    as before; ``upscale_s`` counts decode and model time, not the wait for the model thread.
    """

    concurrent_calls = 2

    reads = ("data", "input_uri", "input_version")
    writes = ("pixels", "pixels_shape", "pixels_dtype", "model_arch", "weights_sha256", "weights_source",
              "weights_storage", "precision", "precision_fallback_tiles", "tile", "tile_pad", "tile_overlap",
              "upscale_s", "node_id", "actor_id", "frames_in", "frames_out", "codec", "notes", "output_width",
              "output_height", "video_segment", "face_model", "face_count", "faces")

    def __init__(self, model: str, engine: EngineOptions, weights_dir: str | None = None,
                 timeout_s: float = 3600.0, video: VideoSpec | None = None,
                 diffusion: DiffusionSpec | None = None, face_model: str | None = None,
                 faces: FacesSpec | None = None) -> None:
        self.engine = engine
        self.weights_dir = weights_dir
        self.face_model = face_model
        self.faces = faces or FacesSpec()
        self._face_parts: tuple | None = None  # restorer, detector, embedder: built on first use
        self._model_thread = ModelThread()  # every torch call of this actor; see the class docstring
        self.timeout_s = timeout_s
        self.video = video or VideoSpec()
        if is_registered(model) and get_spec(model).arch == "diffusers":
            load = (_diffusion_upscaler, model, engine, weights_dir, diffusion)
        else:
            load = (_network_upscaler, model, engine, weights_dir)
        self.upscaler, self.provenance = self._model_thread.run(*load)
        self.node_id, self.actor_id = worker_ids()

    def __call__(self, batch: Batch) -> Batch:
        return map_rows(batch, self.upscale)

    def upscale(self, row: Row) -> Row:
        if not pending(row):
            return row
        row.update(self.provenance, node_id=self.node_id, actor_id=self.actor_id)
        if row.get("kind") == "video":
            return self._upscale_segment(row)
        try:
            with timed(row, "upscale_s"):
                pixels = decode_input(row).pixels
            result = self._model_thread.run(self._timed_upscale, row, pixels)
            pack_pixels(row, result.image)
            row.update(precision=result.precision, precision_fallback_tiles=result.precision_fallback_tiles,
                       tile=result.tile)
        except Exception as error:  # noqa: BLE001 - the item fails, the actor lives on
            return fail(row, "upscale", error)
        return row

    def _timed_upscale(self, row: Row, pixels):
        with timed(row, "upscale_s"):  # on the model thread: the wait for it is not counted
            return self.upscaler.upscale(pixels, timeout_s=self.timeout_s)

    def _upscale_segment(self, row: Row) -> Row:
        """Encode one segment of a video into its store; the driver joins the video once
        every segment is there (:mod:`raysr.job.videos`)."""
        from raysr.video import EncodeOptions
        from raysr.video.remote import local_path
        from raysr.video.store import SegmentStore

        options = EncodeOptions(codec=self.video.codec, crf=self.video.crf, preset=self.video.preset,
                                pix_fmt=self.video.pix_fmt)
        try:
            segment = pickle.loads(row["video_segment"])
            video_faces = self._model_thread.run(self._video_faces)  # loads the restorer once

            def restore_frame(frame, count):
                out = self.upscaler.upscale(frame).image
                return video_faces.restore(frame, out, count) if video_faces else out

            def upscale_frame(frame, count=True):  # frame by frame: another call's item or segment interleaves
                return self._model_thread.run(restore_frame, frame, count)

            with timed(row, "upscale_s"):
                source = local_path(row["input_uri"], row.get("input_version"))  # S3: this node's copy
                encoded = SegmentStore(row["segment_dir"]).encode(
                    source, segment, upscale_frame, options, temporal_strength=self.video.temporal_strength,
                    warm_up_fn=lambda frame: upscale_frame(frame, count=False))
            row.update(precision=self.upscaler.precision, frames_in=segment.frame_count, frames_out=encoded.frames,
                       codec=f"{segment.info.codec}->{self.video.codec}", output_width=encoded.width,
                       output_height=encoded.height, video_segment=None)
            if video_faces:
                row.update(face_model=self.face_model, face_count=video_faces.restored_count,
                           faces=json.dumps(video_faces.summary(), separators=(",", ":")))
        except Exception as error:  # noqa: BLE001
            return fail(row, "upscale", as_store_fault(error, row["segment_dir"]))
        return row

    def _video_faces(self):
        """A fresh per-segment :class:`~raysr.faces.VideoFaces` in a face route, else ``None``."""
        if self.face_model is None:
            return None
        from raysr.faces import FaceRestorer, VideoFaces, embedder_for, make_detector

        if self._face_parts is None:
            self._face_parts = (FaceRestorer(self.face_model, self.weights_dir),
                                make_detector(self.faces.detector, self.weights_dir),
                                embedder_for(self.faces, self.weights_dir))
        return VideoFaces(*self._face_parts, self.faces)
