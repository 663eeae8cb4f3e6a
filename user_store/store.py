"""The SQLite user store: review histories in, typed values out, plus caches for the engine.

CONTRACT SKELETON: signatures and docstrings are the agreed API; bodies are
filled in by the store implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .types import ImportRun, Item, Review, StoreStats, UserHistory, UserSummary


@dataclass(frozen=True)
class ArtifactKey:
    """Identifies one cached engine result."""

    user_id: str
    item_key: str
    """The target item id, or a comma-joined list of item ids the artifact depends on."""
    model_id: str
    """Generator or embedder id ('' when no model was involved)."""
    prompt_version: str
    """The prompt's version string ('' when no prompt was involved)."""
    params: Mapping[str, Any]
    """Every other parameter the result depends on (k, m, n, seed, ...); hashed canonically."""


@dataclass(frozen=True)
class StoredGeneration:
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


class UserStore:
    """One SQLite database (WAL mode), migrated to the current schema on open."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        """Open (creating and migrating if needed) the database at ``path``."""
        raise NotImplementedError

    def close(self) -> None: ...

    # -- reading -----------------------------------------------------------------
    def user_history(self, user_id: str) -> UserHistory:
        """All of a user's reviews with their items, oldest first. Raises UnknownUserError."""
        raise NotImplementedError

    def item(self, item_id: str) -> Item:
        """Raises UnknownItemError."""
        raise NotImplementedError

    def reviews_of_item(self, item_id: str, *, exclude_user: str | None = None) -> list[Review]:
        """Every review of the item (optionally without one user's), oldest first."""
        raise NotImplementedError

    def review(self, user_id: str, item_id: str) -> Review | None: ...

    def users(
        self,
        *,
        search: str | None = None,
        min_reviews: int = 0,
        m: int = 4,
        order_by: str = "reviews",
        limit: int | None = None,
    ) -> list[UserSummary]:
        """Users with counts. ``search`` matches user ids by prefix and review/item text by FTS."""
        raise NotImplementedError

    def search_items(self, query: str, *, limit: int = 50) -> list[Item]:
        """Items whose title or description match ``query`` (FTS5)."""
        raise NotImplementedError

    def items_not_reviewed_by(self, user_id: str, *, query: str = "", limit: int = 50) -> list[Item]: ...

    def stats(self) -> StoreStats:
        raise NotImplementedError

    def import_runs(self) -> list[ImportRun]: ...

    # -- engine caches -----------------------------------------------------------
    def get_embeddings(
        self, keys: Sequence[tuple[str, str]], model_id: str
    ) -> dict[tuple[str, str], np.ndarray]:
        """Cached float32 vectors for (user_id, item_id) reviews; missing keys are absent."""
        raise NotImplementedError

    def put_embeddings(self, vectors: Mapping[tuple[str, str], np.ndarray], model_id: str) -> None:
        """Store vectors as little-endian float32 blobs."""
        raise NotImplementedError

    def get_artifact(self, kind: str, key: ArtifactKey) -> Any | None:
        """A cached JSON value ('comparisons', 'differences', 'profile', ...) or None."""
        raise NotImplementedError

    def put_artifact(self, kind: str, key: ArtifactKey, value: Any) -> None:
        raise NotImplementedError

    def clear_artifacts(self, *, user_id: str | None = None, kind: str | None = None) -> int:
        """Forget cached results (``--refresh``); returns how many were removed."""
        raise NotImplementedError

    def add_generation(
        self,
        *,
        user_id: str,
        item_id: str,
        method: str,
        model_id: str,
        prompt_version: str,
        params: Mapping[str, Any],
        text: str,
        stats: Mapping[str, Any],
    ) -> int:
        raise NotImplementedError

    def generations(self, user_id: str, item_id: str | None = None) -> list[StoredGeneration]:
        raise NotImplementedError

    # -- writing (used by ingest) -------------------------------------------------
    def upsert_reviews(self, reviews: Iterable[Review]) -> tuple[int, int, int]:
        """Insert or update; one review per (user, item), the latest timestamp wins.

        Returns (inserted, updated, duplicates)."""
        raise NotImplementedError

    def upsert_items(self, items: Iterable[Item], *, raw: Mapping[str, str] | None = None) -> int:
        raise NotImplementedError
