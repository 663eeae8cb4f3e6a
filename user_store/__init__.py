"""SQLite store of review histories, and the engine's caches.

The store itself (``UserStore``: numpy, sqlite-utils) is imported on first use of its
names, so importing the package for its types and errors stays cheap: the command line
starts without loading either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import StoreError, UnknownItemError, UnknownUserError
from .types import (
    HistoryEntry,
    ImportRun,
    Item,
    Review,
    StoredGeneration,
    StoreStats,
    UserHistory,
    UserSummary,
)

if TYPE_CHECKING:
    from .store import ArtifactKey, UserStore

_FROM_STORE = ("ArtifactKey", "UserStore")


def __getattr__(name: str) -> Any:
    if name in _FROM_STORE:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
