"""Weights: resolve, verify, cache and convert model files."""

from raysr.weights.ncnn import NcnnFormatError, convert_ncnn
from raysr.weights.resolve import (
    SOURCES,
    ResolvedWeights,
    WeightsError,
    default_weights_dir,
    resolve_weights,
    sha256_file,
)

__all__ = [
    "SOURCES",
    "NcnnFormatError",
    "ResolvedWeights",
    "WeightsError",
    "convert_ncnn",
    "default_weights_dir",
    "resolve_weights",
    "sha256_file",
]
