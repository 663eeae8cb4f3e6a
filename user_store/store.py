"""The SQLite user store: review histories in, typed values out, plus caches for the engine.

One database file in WAL mode, so the app can read while ``dpl ingest`` writes.
Queries go straight to the sqlite3 connection that sqlite-utils wraps; every
row becomes a dataclass in ``converters``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import converters, migrations
from .converters import GENERATION_COLUMNS, IMPORT_RUN_COLUMNS, ITEM_COLUMNS, REVIEW_COLUMNS
from .errors import DatabaseError, StoreError, UnknownItemError, UnknownUserError
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

USER_ORDERS = {
    "reviews": "review_count DESC, user_id",
    "rating": "avg_rating DESC, review_count DESC, user_id",
    "comparable": "comparable_items DESC, review_count DESC, user_id",
    "id": "user_id",
}
"""Accepted values of ``UserStore.users(order_by=...)``."""

_CHUNK = 500  # bound parameters per IN (...) query, well under SQLite's limit


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

    def canonical_params(self) -> str:
        """Key-sorted compact JSON: equal parameters give equal text, whatever their order."""
        return json.dumps(
            self.params,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=_jsonable,
        )

    @property
    def params_hash(self) -> str:
        return hashlib.sha256(self.canonical_params().encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    """JSON for the values engine parameters and results hold besides plain ones."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def fts_query(text: str, *, prefix_last: bool = True) -> str | None:
    """A safe FTS5 query matching every word of ``text`` (the last one as a prefix).

    Words are quoted, so punctuation and FTS operators typed by a person are
    searched for literally instead of breaking the query."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    if prefix_last:
        quoted[-1] += "*"
    return " ".join(quoted)


class UserStore:
    """One SQLite database (WAL mode), migrated to the current schema on open."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        """Open (creating and migrating if needed) the database at ``path``."""
        import sqlite_utils

        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise DatabaseError(f"{str(self.path)!r} is a folder; --db needs a database file path.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DatabaseError(f"Cannot create the folder for {str(self.path)!r}: {err}") from err
        self._lock = threading.RLock()
        try:
            conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            conn.execute("PRAGMA busy_timeout = 60000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")  # at most 64 MiB of page cache
            migrations.apply(self.db)
        except sqlite3.DatabaseError as err:
            raise DatabaseError(
                f"{str(self.path)!r} is not a usable dpl database ({err}). "
                "Point --db at another file or move this one away."
            ) from err
        self.conn = conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # -- reading -----------------------------------------------------------------
    def user_history(self, user_id: str) -> UserHistory:
        """All of a user's reviews with their items, oldest first. Raises UnknownUserError."""
        rows = self._rows(
            f"SELECT {REVIEW_COLUMNS}, {ITEM_COLUMNS}"
            " FROM reviews r JOIN items i ON i.id = r.item_id"
            " WHERE r.user_id = ? ORDER BY r.timestamp, r.rowid",
            (user_id,),
        )
        if not rows:
            raise UnknownUserError(user_id)
        entries = tuple(
            HistoryEntry(review=converters.review(row[:8]), item=converters.item(row[8:]))
            for row in rows
        )
        return UserHistory(user_id=user_id, entries=entries)

    def item(self, item_id: str) -> Item:
        """Raises UnknownItemError."""
        rows = self._rows(f"SELECT {ITEM_COLUMNS} FROM items i WHERE i.id = ?", (item_id,))
        if not rows:
            raise UnknownItemError(item_id)
        return converters.item(rows[0])

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """Several items at once; unknown ids are absent from the result."""
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT {ITEM_COLUMNS} FROM items i WHERE i.id IN ({marks})", chunk
            ):
                found[row[0]] = converters.item(row)
        return found

    def reviews_of_item(self, item_id: str, *, exclude_user: str | None = None) -> list[Review]:
        """Every review of the item (optionally without one user's), oldest first."""
        rows = self._rows(
            f"SELECT {REVIEW_COLUMNS} FROM reviews r WHERE r.item_id = ? AND r.user_id IS NOT ?"
            " ORDER BY r.timestamp, r.rowid",
            (item_id, exclude_user),
        )
        return [converters.review(row) for row in rows]

    def reviewer_counts(self, item_ids: Iterable[str]) -> dict[str, int]:
        """How many users reviewed each item (items without reviews are absent)."""
        ids = list(dict.fromkeys(item_ids))
        counts: dict[str, int] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for item_id, n in self._rows(
                f"SELECT item_id, count(*) FROM reviews WHERE item_id IN ({marks})"
                " GROUP BY item_id",
                chunk,
            ):
                counts[item_id] = n
        return counts

    def review(self, user_id: str, item_id: str) -> Review | None:
        rows = self._rows(
            f"SELECT {REVIEW_COLUMNS} FROM reviews r WHERE r.user_id = ? AND r.item_id = ?",
            (user_id, item_id),
        )
        return converters.review(rows[0]) if rows else None

    def users(
        self,
        *,
        search: str | None = None,
        min_reviews: int = 0,
        m: int = 4,
        order_by: str = "reviews",
        limit: int | None = None,
    ) -> list[UserSummary]:
        """Users with counts. ``search`` matches user ids by prefix and review/item text by FTS.

        ``comparable_items`` counts the user's items that at least ``m`` other users
        reviewed; ``order_by`` is one of ``USER_ORDERS``."""
        if order_by not in USER_ORDERS:
            raise StoreError(
                f"Unknown user order {order_by!r}; choose one of {', '.join(USER_ORDERS)}."
            )
        params: dict[str, Any] = {"m": m, "min_reviews": min_reviews}
        where = ""
        if search and search.strip():
            params["prefix"] = search.strip()
            params["prefix_end"] = search.strip() + "\U0010ffff"
            clauses = ["(r.user_id >= :prefix AND r.user_id < :prefix_end)"]
            query = fts_query(search)
            if query:
                params["q"] = query
                clauses.append(
                    "r.user_id IN (SELECT reviews.user_id FROM reviews_fts"
                    " JOIN reviews ON reviews.rowid = reviews_fts.rowid"
                    " WHERE reviews_fts MATCH :q)"
                )
                clauses.append(
                    "r.user_id IN (SELECT reviews.user_id FROM items_fts"
                    " JOIN items ON items.rowid = items_fts.rowid"
                    " JOIN reviews ON reviews.item_id = items.id"
                    " WHERE items_fts MATCH :q)"
                )
            where = "WHERE " + " OR ".join(clauses)
        sql = f"""
            WITH reviewers AS (SELECT item_id, count(*) AS n FROM reviews GROUP BY item_id)
            SELECT r.user_id, count(*) AS review_count, avg(r.rating) AS avg_rating,
                   sum(reviewers.n - 1 >= :m) AS comparable_items
            FROM reviews r JOIN reviewers ON reviewers.item_id = r.item_id
            {where}
            GROUP BY r.user_id
            HAVING count(*) >= :min_reviews
            ORDER BY {USER_ORDERS[order_by]}
        """
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = int(limit)
        return [
            UserSummary(user_id=u, review_count=n, avg_rating=float(avg), comparable_items=int(c))
            for u, n, avg, c in self._rows(sql, params)
        ]

    def search_items(self, query: str, *, limit: int = 50) -> list[Item]:
        """Items whose title or description match ``query`` (FTS5)."""
        q = fts_query(query)
        if q is None:
            return []
        rows = self._rows(
            f"SELECT {ITEM_COLUMNS} FROM items_fts JOIN items i ON i.rowid = items_fts.rowid"
            " WHERE items_fts MATCH ? ORDER BY rank LIMIT ?",
            (q, limit),
        )
        return [converters.item(row) for row in rows]

    def items_not_reviewed_by(
        self, user_id: str, *, query: str = "", limit: int = 50
    ) -> list[Item]:
        """Items the user has not reviewed, most reviewed first (they have most to compare
        against); ``query`` narrows them by title/description words or an id prefix."""
        params: dict[str, Any] = {"user": user_id, "limit": limit}
        filter_sql = ""
        if query.strip():
            params["prefix"] = query.strip()
            params["prefix_end"] = query.strip() + "\U0010ffff"
            filter_sql = "AND ((i.id >= :prefix AND i.id < :prefix_end)"
            q = fts_query(query)
            if q:
                params["q"] = q
                filter_sql += (
                    " OR i.rowid IN (SELECT rowid FROM items_fts WHERE items_fts MATCH :q)"
                )
            filter_sql += ")"
        rows = self._rows(
            f"""SELECT {ITEM_COLUMNS} FROM items i
                LEFT JOIN (SELECT item_id, count(*) AS n FROM reviews GROUP BY item_id) c
                  ON c.item_id = i.id
                WHERE i.id NOT IN (SELECT item_id FROM reviews WHERE user_id = :user)
                {filter_sql}
                ORDER BY coalesce(c.n, 0) DESC, i.id LIMIT :limit""",
            params,
        )
        return [converters.item(row) for row in rows]

    def stats(self) -> StoreStats:
        def one(sql: str) -> int:
            return int(self._rows(sql)[0][0])

        cached = {"embeddings": one("SELECT count(*) FROM embeddings")}
        for kind, n in self._rows(
            "SELECT kind, count(*) FROM artifacts GROUP BY kind ORDER BY kind"
        ):
            cached[kind] = n
        cached["generations"] = one("SELECT count(*) FROM generations")
        db_bytes = sum(
            p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()
        )
        return StoreStats(
            users=one("SELECT count(*) FROM users"),
            items=one("SELECT count(*) FROM items"),
            reviews=one("SELECT count(*) FROM reviews"),
            items_missing_metadata=one("SELECT count(*) FROM items WHERE metadata_missing"),
            imports=one("SELECT count(*) FROM import_runs"),
            db_path=str(self.path),
            db_bytes=db_bytes,
            cached=cached,
        )

    def import_runs(self) -> list[ImportRun]:
        rows = self._rows(f"SELECT {IMPORT_RUN_COLUMNS} FROM import_runs ORDER BY id")
        return [converters.import_run(row) for row in rows]

    # -- engine caches -----------------------------------------------------------
    def get_embeddings(
        self, keys: Sequence[tuple[str, str]], model_id: str
    ) -> dict[tuple[str, str], np.ndarray]:
        """Cached float32 vectors for (user_id, item_id) reviews; missing keys are absent."""
        wanted = list(dict.fromkeys((u, i) for u, i in keys))
        found: dict[tuple[str, str], np.ndarray] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self._rows(
                "SELECT e.user_id, e.item_id, e.dim, e.vector FROM json_each(?) k"
                " JOIN embeddings e ON e.user_id = json_extract(k.value, '$[0]')"
                " AND e.item_id = json_extract(k.value, '$[1]')"
                " AND e.model_id = ?",
                (json.dumps(chunk), model_id),
            )
            for user_id, item_id, dim, blob in rows:
                found[(user_id, item_id)] = converters.blob_vector(blob, dim)
        return found

    def put_embeddings(self, vectors: Mapping[tuple[str, str], np.ndarray], model_id: str) -> None:
        """Store vectors as little-endian float32 blobs."""
        rows = []
        for (user_id, item_id), vector in vectors.items():
            dim, blob = converters.vector_blob(vector)
            rows.append((user_id, item_id, model_id, dim, blob))
        with self._lock, self.conn:
            self.conn.executemany(
                "INSERT INTO embeddings (user_id, item_id, model_id, dim, vector)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, item_id, model_id)"
                " DO UPDATE SET dim = excluded.dim, vector = excluded.vector",
                rows,
            )

    def get_artifact(self, kind: str, key: ArtifactKey) -> Any | None:
        """A cached JSON value ('comparisons', 'differences', 'profile', ...) or None."""
        rows = self._rows(
            "SELECT value FROM artifacts WHERE kind = ? AND user_id = ? AND item_key = ?"
            " AND model_id = ? AND prompt_version = ? AND params_hash = ?",
            (kind, key.user_id, key.item_key, key.model_id, key.prompt_version, key.params_hash),
        )
        return json.loads(rows[0][0]) if rows else None

    def put_artifact(self, kind: str, key: ArtifactKey, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False, default=_jsonable)
        with self._lock, self.conn:
            self.conn.execute(
                "INSERT INTO artifacts (kind, user_id, item_key, model_id, prompt_version,"
                " params_hash, params, value, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, user_id, item_key, model_id, prompt_version, params_hash)"
                " DO UPDATE SET value = excluded.value, params = excluded.params,"
                " created_at = excluded.created_at",
                (
                    kind,
                    key.user_id,
                    key.item_key,
                    key.model_id,
                    key.prompt_version,
                    key.params_hash,
                    key.canonical_params(),
                    text,
                    _now(),
                ),
            )

    def clear_artifacts(self, *, user_id: str | None = None, kind: str | None = None) -> int:
        """Forget cached results (``--refresh``); returns how many were removed."""
        with self._lock, self.conn:
            cur = self.conn.execute(
                "DELETE FROM artifacts WHERE (:user IS NULL OR user_id = :user)"
                " AND (:kind IS NULL OR kind = :kind)",
                {"user": user_id, "kind": kind},
            )
            return cur.rowcount

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
        with self._lock, self.conn:
            cur = self.conn.execute(
                "INSERT INTO generations (user_id, item_id, method, model_id, prompt_version,"
                " params, text, stats, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    item_id,
                    method,
                    model_id,
                    prompt_version,
                    json.dumps(dict(params), sort_keys=True, ensure_ascii=False, default=_jsonable),
                    text,
                    json.dumps(dict(stats), ensure_ascii=False, default=_jsonable),
                    _now(),
                ),
            )
            return int(cur.lastrowid)

    def generations(self, user_id: str, item_id: str | None = None) -> list[StoredGeneration]:
        """Stored generations for a user (and item), oldest first."""
        rows = self._rows(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE user_id = ?"
            " AND (? IS NULL OR item_id = ?) ORDER BY id",
            (user_id, item_id, item_id),
        )
        return [converters.generation(row) for row in rows]

    # -- writing (used by ingest) -------------------------------------------------
    def upsert_reviews(self, reviews: Iterable[Review]) -> tuple[int, int, int]:
        """Insert or update; one review per (user, item), the latest timestamp wins.

        Returns (inserted, updated, duplicates), counting each review as if applied
        one after another: *inserted* adds a new (user, item) pair; *updated* replaces
        the stored review with a newer one (or, at an equal timestamp, a different
        one: the later line wins); *duplicates* changed nothing (the stored review is
        identical or newer). The three always add up to the number of reviews given."""
        from .writer import write_reviews

        with self._lock, self.conn:
            return write_reviews(self.conn, list(reviews))

    def upsert_items(self, items: Iterable[Item], *, raw: Mapping[str, str] | None = None) -> int:
        """Insert or replace item metadata; ``raw`` maps item id to its source record (JSON).

        Returns how many items were added or changed."""
        from .writer import write_items

        with self._lock, self.conn:
            inserted, updated, _ = write_items(self.conn, list(items), raw or {})
            return inserted + updated
