import cv2
import numpy as np
import pyarrow as pa

from factories import compact_state
from raysr.engine import EngineOptions
from raysr.stages._batch import rows_of, unpack_pixels
from raysr.stages.upscale import UpscaleStage


def _batch(*items):
    return pa.table({"input_uri": [uri for uri, _ in items], "data": [data for _, data in items],
                     "status": pa.array([None] * len(items), pa.string())})


def test_stage_upscales_good_rows_and_fails_bad_ones_without_raising(save_state, photo):
    stage = UpscaleStage(str(save_state(compact_state())), EngineOptions(precision="fp32"))
    good = cv2.imencode(".png", cv2.cvtColor(photo[:20, :24], cv2.COLOR_RGB2BGR))[1].tobytes()
    rows = rows_of(stage(_batch(("/in/good.png", good), ("/in/bad.png", b"garbage"))))
    assert rows[0]["status"] is None and unpack_pixels(rows[0]).shape == (80, 96, 3)
    assert rows[0]["precision"] == "fp32" and rows[0]["weights_sha256"] and rows[0]["model_arch"] == "Compact"
    assert rows[1]["status"] == "error" and rows[1]["error_stage"] == "upscale"
    assert rows[1]["error_message"].startswith("/in/bad.png: ")
    assert rows[1]["pixels"] is None


def test_item_timeout_becomes_an_error_row(save_state, photo):
    stage = UpscaleStage(str(save_state(compact_state())), EngineOptions(precision="fp32", tile=16), timeout_s=1e-9)
    data = cv2.imencode(".png", photo[:64, :64])[1].tobytes()
    row = rows_of(stage(_batch(("/in/slow.png", data))))[0]
    assert row["status"] == "error" and row["error_type"] == "timeout"
    assert "item timeout" in row["error_message"]


def test_rows_already_failed_pass_through_untouched(save_state):
    stage = UpscaleStage("bicubic", EngineOptions())
    batch = pa.table({"input_uri": ["/x"], "data": [b""], "status": ["error"]})
    assert rows_of(stage(batch))[0]["status"] == "error"
