"""Errors a user can meet, gathered so the CLI prints them as one line, not a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from raysr.engine.precision import PrecisionError
from raysr.engine.upscaler import EngineError
from raysr.job.lease import LeaseHeldError
from raysr.job.spec import SpecError
from raysr.models.load import ModelLoadError
from raysr.sinks.write import OutputsStoppedError, UnsafePathError
from raysr.sources.decode import DecodeError
from raysr.submit import SubmitError
from raysr.weights.ncnn import NcnnFormatError
from raysr.weights.resolve import WeightsError

USER_ERRORS: tuple[type[BaseException], ...] = (
    DecodeError,
    EngineError,
    FileNotFoundError,
    KeyError,
    LeaseHeldError,
    ModelLoadError,
    NcnnFormatError,
    OutputsStoppedError,
    PrecisionError,
    UnsafePathError,
    ValidationError,
    SpecError,
    SubmitError,
    ValueError,
    WeightsError,
)
