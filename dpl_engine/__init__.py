"""Difference-aware Personalization Learning (DPL) over a user store and local models."""

from .engine import Engine, Prepared
from .errors import EngineError
from .types import (
    METHODS,
    Cancelled,
    CancelToken,
    ComparisonSet,
    ComparisonUser,
    Differences,
    EngineConfig,
    Event,
    GenerationResult,
    MeasuredDifferences,
    Method,
    Profile,
    ProgressEvent,
    ResultEvent,
    Retrieved,
    Target,
    TextMeasures,
    TokenEvent,
)

__all__ = [
    "METHODS",
    "CancelToken",
    "Cancelled",
    "ComparisonSet",
    "ComparisonUser",
    "Differences",
    "Engine",
    "EngineConfig",
    "EngineError",
    "Event",
    "GenerationResult",
    "MeasuredDifferences",
    "Method",
    "Prepared",
    "Profile",
    "ProgressEvent",
    "ResultEvent",
    "Retrieved",
    "Target",
    "TextMeasures",
    "TokenEvent",
]
