"""raysr.bench.official: constructor arguments and the checkpoint layout handed to RealESRGANer."""

from __future__ import annotations

import pytest
import torch

from factories import compact_state, rrdbnet_state
from raysr.bench.official import official_arch, official_weights
from raysr.models.load import load_model


def test_rrdbnet_arguments_from_state(save_state):
    loaded = load_model(str(save_state(rrdbnet_state(num_blocks=2, num_feat=16), "rrdb.pth")))
    assert official_arch(loaded) == {"arch": "ESRGAN", "scale": 4, "num_feat": 16, "num_block": 2, "num_grow_ch": 32}


def test_compact_arguments_from_state(save_state):
    loaded = load_model(str(save_state(compact_state(num_conv=3, num_feat=8), "compact.pth")))
    assert official_arch(loaded) == {"arch": "Compact", "scale": 4, "num_feat": 8, "num_conv": 3}


@pytest.mark.parametrize("layout", ["bare", "params", "params_ema"])
def test_weights_are_rewritten_as_params_ema(save_state, tmp_path, layout):
    state = rrdbnet_state()
    loaded = load_model(str(save_state(state, f"rrdb-{layout}.pth", layout=layout)))
    path = official_weights(loaded, tmp_path)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"params_ema"} and saved["params_ema"].keys() == state.keys()
