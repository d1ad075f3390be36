import numpy as np
import pytest
import torch

from raysr.engine.options import TILE_LAYOUT
from raysr.engine.tiling import Span, axis_weights, plan_axis, tiled_forward


def _nearest(scale: int):
    def forward(batch: torch.Tensor) -> torch.Tensor:
        return batch.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).float()

    return forward


def _float_finish(rows: torch.Tensor) -> np.ndarray:
    return rows.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("length", [1, 17, 64, 100, 255, 256, 1000])
@pytest.mark.parametrize("tile, pad, overlap", [(16, 4, 4), (64, 8, 8), (128, 24, 16), (50, 0, 0)])
def test_plan_axis_covers_and_windows_have_one_size(length, tile, pad, overlap):
    spans = plan_axis(length, tile, pad, overlap)
    assert spans[0].core_start == 0 and spans[-1].core_end == length
    for previous, current in zip(spans, spans[1:]):
        assert current.core_start <= previous.core_end, "cores must leave no gap"
    assert len({span.win_end - span.win_start for span in spans}) == 1
    for span in spans:
        assert 0 <= span.win_start <= span.core_start < span.core_end <= span.win_end <= length
        # Context on every side that is not an image border.
        if span.core_start > 0:
            assert span.core_start - span.win_start >= min(pad, span.core_start)
        if span.core_end < length:
            assert span.win_end - span.core_end >= min(pad, length - span.core_end)


@pytest.mark.parametrize("multiple", [1, 2, 4, 8])
@pytest.mark.parametrize("length", [200, 256, 300, 384, 1000, 1920])
@pytest.mark.parametrize("tile, pad, overlap", [(128, 16, 16), (64, 10, 0), (96, 24, 16)])
def test_plan_axis_uses_the_fewest_windows_within_the_bound_and_wastes_no_border(length, tile, pad, overlap, multiple):
    length = length // multiple * multiple
    spans = plan_axis(length, tile, pad, overlap, multiple)
    window = spans[0].win_end - spans[0].win_start
    pad_px = -(-pad // multiple) * multiple
    seam = 2 * pad_px + 2 * (-(-(overlap // 2) // multiple) * multiple)
    max_window = -(-tile // multiple) * multiple + seam
    assert window <= max_window
    # One window fewer, even at the largest size, could not cover the axis.
    fewer = len(spans) - 1
    assert fewer * max_window - (fewer - 1) * seam < length
    # Border windows spend their outer side on the core; inner context is tile_pad (+ rounding).
    assert spans[0].win_start == spans[0].core_start == 0 and spans[-1].win_end == spans[-1].core_end == length
    for left, right in zip(spans, spans[1:]):
        assert pad_px <= left.win_end - left.core_end <= pad_px + multiple
        assert pad_px <= right.core_start - right.win_start <= pad_px + multiple


def test_plan_axis_is_one_window_while_the_axis_fits_in_the_bound():
    # tile 128 + 16 px cross-fade + 2 x 16 px context = 176
    assert plan_axis(176, 128, 16, 16) == [Span(0, 176, 0, 176)]
    spans = plan_axis(177, 128, 16, 16)
    assert len(spans) == 2 and spans[0].win_end - spans[0].win_start < 176


def test_plan_axis_respects_size_multiple():
    spans = plan_axis(96, 20, 5, 6, multiple=4)
    for span in spans:
        assert span.win_start % 4 == 0 and (span.win_end - span.win_start) % 4 == 0
        assert span.core_start % 4 == 0
    with pytest.raises(ValueError, match="multiple"):
        plan_axis(97, 20, 5, 6, multiple=4)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_axis_weights_sum_to_one(scale):
    spans = plan_axis(300, 64, 8, 16)
    total = np.zeros(300 * scale, np.float32)
    for index, span in enumerate(spans):
        weights = axis_weights(spans, index, scale)
        assert weights.shape == ((span.core_end - span.core_start) * scale,)
        assert (weights > 0).all()
        total[span.core_start * scale: span.core_end * scale] += weights
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("height, width", [(37, 53), (64, 64), (100, 31), (16, 200)])
def test_split_then_merge_gives_the_input_back_exactly(height, width):
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    tensor = image.permute(2, 0, 1)[None].float() / 255
    out = np.empty((height, width, 3), np.uint8)

    def finish(rows):
        return (rows * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    tiled_forward(tensor, lambda batch: batch.float(), 1, out, finish, tile=16, tile_pad=4, tile_overlap=6, tile_batch=3)
    np.testing.assert_array_equal(out, image.numpy())


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_untiled_for_a_pointwise_model(scale):
    tensor = torch.rand(1, 3, 45, 70)
    untiled = np.empty((45 * scale, 70 * scale, 3), np.float32)
    tiled = np.empty_like(untiled)
    tiled_forward(tensor, _nearest(scale), scale, untiled, _float_finish, tile=512, tile_pad=0, tile_overlap=0)
    tiled_forward(tensor, _nearest(scale), scale, tiled, _float_finish, tile=20, tile_pad=3, tile_overlap=8, tile_batch=2)
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)


def test_span_is_frozen():
    span = Span(0, 1, 0, 1)
    with pytest.raises(AttributeError):
        span.core_start = 3


def test_layout_is_pinned_to_its_settings_version():
    # Moving a window changes output pixels, and resumed jobs only redo items whose settings
    # hash changed: change the layout, bump options.TILE_LAYOUT, then update these.
    assert TILE_LAYOUT == 2
    assert [tuple(vars(span).values()) for span in plan_axis(300, 128, 16, 16)] == [
        (0, 158, 0, 174), (142, 300, 126, 300)]
    assert [tuple(vars(span).values()) for span in plan_axis(384, 128, 16, 16)] == [
        (0, 144, 0, 160), (128, 256, 112, 272), (240, 384, 224, 384)]
