"""Colour, metrics and write stages on hand-made rows (no Ray)."""

import cv2
import numpy as np
import pytest

from raysr.manifest import COLUMNS
from raysr.stages._batch import batch_of, pack_pixels, rows_of, unpack_pixels
from raysr.stages.color import ColorStage, color_method_for
from raysr.stages.metrics import MetricsStage
from raysr.stages.write import WriteStage


@pytest.fixture
def row(photo, tmp_path):
    source = photo[100:148, 100:148]
    output = cv2.resize(source, (192, 192), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".png", cv2.cvtColor(source, cv2.COLOR_RGB2BGR))[1].tobytes()
    row = {"item_id": "i", "input_uri": "/in/a.png", "relative": "a.png", "data": data, "status": None,
           "model": "RealESRGAN_x4plus", "route": "photo", "height": 48, "width": 48,
           "output_uri": str(tmp_path / "out" / "a.png")}
    pack_pixels(row, output)
    return row


def test_color_method_defaults_follow_the_model_family():
    assert color_method_for("RealESRGAN_x4plus", None) == "wavelet"
    assert color_method_for("realesr-animevideov3", None) == "none"
    assert color_method_for("/my/model.pth", None) == "none"
    assert color_method_for("realesr-animevideov3", "adain") == "adain"


def test_color_stage_pulls_a_colour_cast_back(row):
    shifted = unpack_pixels(row).astype(np.int16)
    shifted[:, :, 0] += 40
    pack_pixels(row, np.clip(shifted, 0, 255).astype(np.uint8))
    before = MetricsStage().measure(dict(row))["delta_e"]
    corrected = rows_of(ColorStage({"photo": None})(batch_of([row])))[0]
    assert corrected["color_method"] == "wavelet"
    assert MetricsStage().measure(corrected)["delta_e"] < before / 3


def test_metrics_and_flags(row):
    measured = MetricsStage(flag_lr_psnr_below=20, flag_delta_e_above=12).measure(dict(row))
    assert measured["lr_psnr"] > 30 and 0 < measured["lr_ssim"] <= 1 and measured["sharpness"] > 0
    assert measured["status"] is None
    strict = MetricsStage(flag_lr_psnr_below=99).measure(dict(row))
    assert strict["status"] == "flagged" and "lr_psnr" in strict["flag_reasons"]


def test_metrics_against_a_reference_dir(row, tmp_path, photo):
    reference = tmp_path / "ref" / "a.png"
    reference.parent.mkdir()
    cv2.imwrite(str(reference), cv2.cvtColor(unpack_pixels(row), cv2.COLOR_RGB2BGR))
    measured = MetricsStage(reference_dir=str(tmp_path / "ref")).measure(dict(row))
    assert measured["ref_psnr"] == float("inf") and measured["ref_ssim"] == pytest.approx(1.0)


def test_write_stage_writes_atomically_and_returns_manifest_rows_only(row, tmp_path):
    out = rows_of(WriteStage("png", 95)(batch_of([row, {**row, "item_id": "j", "status": "error", "pixels": None}])))
    assert tuple(out[0]) == COLUMNS
    assert out[0]["status"] == "ok" and out[0]["output_size"] == (tmp_path / "out" / "a.png").stat().st_size
    assert (out[0]["output_width"], out[0]["output_height"]) == (192, 192) and "tag" in out[0]["metadata_kept"]
    assert out[1]["status"] == "error" and out[1]["finished_at"] is not None
    assert not list((tmp_path / "out").glob(".*"))


def test_lossy_outputs_say_so(row):
    out = rows_of(WriteStage("jpg", 95)(batch_of([{**row, "output_uri": row["output_uri"].replace(".png", ".jpg")}])))[0]
    assert out["status"] == "ok" and "lossy jpg at quality 95" in out["notes"]


def test_the_fused_post_stages_decode_each_input_once(row, monkeypatch):
    import raysr.stages._batch as batch_module

    decoded_uris: list[str] = []
    references: list[tuple] = []
    decode, resize = batch_module.decode_image, batch_module.resize

    def counted(data, uri, **limits):
        decoded_uris.append(uri)
        return decode(data, uri, **limits)

    def counted_resize(image, size_hw, method):
        references.append((tuple(size_hw), method))
        return resize(image, size_hw, method)

    monkeypatch.setattr(batch_module, "decode_image", counted)
    monkeypatch.setattr(batch_module, "resize", counted_resize)
    monkeypatch.setattr(batch_module, "_kept", {})  # an earlier test may have kept this very input
    stages = [ColorStage({"photo": None}), MetricsStage(), WriteStage("png", 95)]
    for uri in ("/in/a.png", "/in/b.png"):
        item = dict(row, input_uri=uri, output_uri=row["output_uri"].replace("a.png", uri[-5:]))
        for stage in stages:  # as Ray Data runs them: fused, one row at a time, Arrow in between
            item = rows_of(stage(batch_of([item])))[0]
        assert item["status"] == "ok" and item["lr_psnr"] > 20, item.get("error_message")
    assert decoded_uris == ["/in/a.png", "/in/b.png"]
    assert len(references) == 2 and {method for _, method in references} == {"bicubic"}  # colour's, reused by metrics
    changed = dict(row, data=cv2.imencode(".png", np.zeros((48, 48, 3), np.uint8))[1].tobytes())
    assert batch_module.decode_input(changed, keep=True).pixels.max() == 0  # same uri, new bytes: decoded anew
    assert not batch_module.decode_input(changed, keep=True).pixels.flags.writeable  # shared: read-only
