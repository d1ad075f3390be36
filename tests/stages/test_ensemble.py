import json

import cv2
import numpy as np
import pyarrow as pa
import pytest

from factories import compact_state
from raysr.engine import EngineOptions
from raysr.stages._batch import rows_of, unpack_pixels
from raysr.stages.color import ColorStage
from raysr.stages.ensemble import BlendStage, EnsembleMemberStage, blend
from raysr.stages.upscale import UpscaleStage

FP32 = EngineOptions(precision="fp32")


def test_blend_is_the_weighted_mean_rounded_in_the_input_dtype():
    first = np.full((2, 3, 3), 100, np.uint8)
    second = np.full((2, 3, 3), 201, np.uint8)
    assert (blend([first, second], [0.5, 0.5]) == 150).all()  # 150.5 rounds to even
    assert blend([first, second], [0.5, 0.5]).dtype == np.uint8
    wide = blend([first.astype(np.uint16) * 257, second.astype(np.uint16) * 257], [0.75, 0.25])
    assert wide.dtype == np.uint16 and wide[0, 0, 0] == round(0.75 * 25700 + 0.25 * 51657)


def test_blend_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one weight per output"):
        blend([np.zeros((2, 2, 3), np.uint8)], [0.5, 0.5])
    with pytest.raises(ValueError, match="one shape"):
        blend([np.zeros((2, 2, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)], [0.5, 0.5])


def _rows(photo):
    data = cv2.imencode(".png", cv2.cvtColor(photo[:20, :24], cv2.COLOR_RGB2BGR))[1].tobytes()
    return pa.table({"input_uri": ["/in/a.png"], "data": [data], "status": pa.array([None], pa.string()),
                     "route": ["photo"], "model": ["main"], "kind": ["image"]})


def test_member_outputs_are_blended_with_the_route_weights(save_state, photo):
    main_path = save_state(compact_state(seed=0), "main.pth")
    member_path = save_state(compact_state(seed=1), "member.pth")
    batch = UpscaleStage(str(main_path), FP32)(_rows(photo))
    main_pixels = unpack_pixels(rows_of(batch)[0]).copy()
    batch = EnsembleMemberStage(str(member_path), FP32)(batch)
    member_row = rows_of(batch)[0]
    assert len(member_row["ensemble_pixels"]) == 1
    member_pixels = np.frombuffer(member_row["ensemble_pixels"][0], np.uint8).reshape(main_pixels.shape)
    assert not np.array_equal(member_pixels, main_pixels)  # two different models

    weights = {"photo": [("main", 0.7), ("member", 0.3)]}
    row = rows_of(BlendStage(weights, {"photo": "none"})(batch))[0]
    expected = blend([main_pixels, member_pixels], [0.7, 0.3])
    assert np.array_equal(unpack_pixels(row), expected)
    assert row["color_method"] == "none" and row["ensemble_pixels"] is None
    described = json.loads(row["ensemble"])
    assert [part["weight"] for part in described] == [0.7, 0.3]
    assert described[1]["model"] == str(member_path) and described[1]["weights_sha256"]


def test_blended_rows_are_not_colour_corrected_twice(save_state, photo):
    batch = UpscaleStage(str(save_state(compact_state(seed=0))), FP32)(_rows(photo))
    batch = EnsembleMemberStage("bicubic", FP32)(batch)
    blended = rows_of(BlendStage({"photo": [("main", 0.5), ("bicubic", 0.5)]}, {"photo": "adain"})(batch))[0]
    assert blended["color_method"] == "adain"
    after = rows_of(ColorStage({"photo": "wavelet"})(pa.Table.from_pylist([blended])))[0]
    assert after["color_method"] == "adain" and after["pixels"] == blended["pixels"]


def test_a_member_of_another_scale_fails_the_item_with_the_reason(save_state, photo):
    batch = UpscaleStage(str(save_state(compact_state(scale=4), "x4.pth")), FP32)(_rows(photo))
    row = rows_of(EnsembleMemberStage(str(save_state(compact_state(scale=2), "x2.pth")), FP32)(batch))[0]
    assert row["status"] == "error" and row["error_stage"] == "upscale"
    assert "must share the scale" in row["error_message"] and row["error_message"].startswith("/in/a.png")
