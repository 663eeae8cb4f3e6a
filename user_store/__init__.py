"""SQLite store of review histories, and the engine's caches."""

from .errors import StoreError, UnknownItemError, UnknownUserError
from .store import ArtifactKey, StoredGeneration, UserStore
from .types import HistoryEntry, ImportRun, Item, Review, StoreStats, UserHistory, UserSummary

__all__ = [
    "ArtifactKey",
    "HistoryEntry",
    "ImportRun",
    "Item",
    "Review",
    "StoreError",
    "StoreStats",
    "StoredGeneration",
    "UnknownItemError",
    "UnknownUserError",
    "UserHistory",
    "UserStore",
    "UserSummary",
]
