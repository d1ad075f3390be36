"""`raysr bench post`: CPU time per item of the stages after the model.

On a GPU node the model actor holds the GPU and one core; colour correction, metrics,
encode and write run as CPU tasks on the node's other cores. When they need more core
time per item than the model needs GPU time, the GPU waits. This bench times each
stage's row function (the code the job runs) on one item, a ``size``² photo and a
``scale``× output, on one core, plus the input's decode, which the three stages share
(they run fused, one row at a time), and says how many cores keep up with a given
model rate.
"""

from __future__ import annotations

import tempfile

import cv2

from raysr.bench.engine import bench_photo, machine_line, median_seconds
from raysr.stages._batch import decode_input, pack_pixels
from raysr.stages.color import ColorStage
from raysr.stages.metrics import MetricsStage
from raysr.stages.write import WriteStage


def bench_post(size: int = 512, scale: int = 4, color: str = "wavelet", fmt: str = "png", repeats: int = 3,
               model_images_per_s: float | None = None) -> dict:
    """Milliseconds of one core per item for each stage after the model.

    The output stands in for a model's: the photo upscaled with bicubic (the stages'
    cost depends on size, not content).

    Example:
        >>> bench_post(512, model_images_per_s=21.2)["cores_for_model_rate"]  # doctest: +SKIP
        17.1

    Returns:
        ms per stage and in all, items/s of one core, and with ``model_images_per_s`` the
        cores that keep up with that model rate.
    """
    if size < 16 or scale < 1:
        raise ValueError(f"need size >= 16 and scale >= 1, got size={size}, scale={scale}")
    photo = bench_photo(size)
    output = cv2.resize(photo, (size * scale, size * scale), interpolation=cv2.INTER_CUBIC)
    _, input_png = cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    stages = {"color": ColorStage({"photo": color}).correct, "metrics": MetricsStage().measure,
              "write": WriteStage(fmt, 95).write}
    results: dict = {"machine": machine_line(), "input": f"{size}x{size}", "output": f"{size * scale}x{size * scale}",
                     "color": color, "format": fmt, "threads": 1}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core: what one CPU task of the job gets
    try:
        with tempfile.TemporaryDirectory(prefix="raysr-bench-post-") as out:
            def item() -> dict:
                row = {"item_id": "bench", "input_uri": "bench.png", "relative": "bench.png", "kind": "image",
                       "data": input_png.tobytes(), "model": "bench", "route": "photo", "status": None,
                       "height": size, "output_uri": f"{out}/bench.{fmt}"}
                pack_pixels(row, output)
                return row

            def run(name: str) -> None:
                row = stages[name](item())
                if row.get("status") == "error":
                    raise RuntimeError(f"the {name} stage failed on the bench item: {row.get('error_message')}")

            results["decode_ms"] = round(1000 * median_seconds(lambda: decode_input(item()), repeats), 1)
            decode_input(item(), keep=True)  # the stages then share it, as in the job's fused task
            for name in stages:
                results[f"{name}_ms"] = round(1000 * median_seconds(lambda name=name: run(name), repeats), 1)
    finally:
        cv2.setNumThreads(threads)
    total_ms = sum(results[f"{name}_ms"] for name in ("decode", *stages))
    results.update(total_ms=round(total_ms, 1), items_per_s_per_core=round(1000 / total_ms, 2))
    if model_images_per_s:
        results.update(model_images_per_s=model_images_per_s,
                       cores_for_model_rate=round(model_images_per_s * total_ms / 1000, 1))
    return results
