"""The values the store hands out. Rows never leave ``user_store``: these do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    id: str
    """The item's ``parent_asin``."""
    title: str
    """Product title; the id itself when the import had no metadata for the item."""
    description: str = ""
    """Description paragraphs joined with newlines ('' when unknown)."""
    categories: tuple[str, ...] = ()
    metadata_missing: bool = False
    """True when no metadata file described this item."""

    @property
    def search_text(self) -> str:
        """What retrieval matches against: the description, or the title where there is none."""
        return self.description or self.title


@dataclass(frozen=True)
class Review:
    user_id: str
    item_id: str
    rating: float
    """1.0 .. 5.0"""
    title: str
    text: str
    timestamp: int
    """Milliseconds since the epoch (UTC)."""
    helpful_votes: int = 0
    source: str = ""
    """The import format the review came from (amazon2023, amazon2014, ...)."""


@dataclass(frozen=True)
class HistoryEntry:
    review: Review
    item: Item


@dataclass(frozen=True)
class UserHistory:
    user_id: str
    entries: tuple[HistoryEntry, ...]
    """Oldest first; the last entry is the user's most recent review."""

    @property
    def latest(self) -> HistoryEntry | None:
        return self.entries[-1] if self.entries else None


@dataclass(frozen=True)
class UserSummary:
    user_id: str
    review_count: int
    avg_rating: float
    comparable_items: int
    """How many of the user's items at least ``m`` other users also reviewed."""


@dataclass(frozen=True)
class ImportRun:
    id: int
    file: str
    format: str
    started_at: str
    finished_at: str | None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class StoreStats:
    users: int
    items: int
    reviews: int
    items_missing_metadata: int
    imports: int
    db_path: str
    db_bytes: int
    cached: dict[str, int] = field(default_factory=dict)
    """Counts of cached artifacts by kind (embeddings, comparisons, differences, ...)."""


@dataclass(frozen=True)
class StoredGeneration:
    """A generated review kept in the store, with what made it."""

    id: int
    user_id: str
    item_id: str
    method: str
    model_id: str
    prompt_version: str
    params: dict[str, Any]
    text: str
    stats: dict[str, Any]
    created_at: str
