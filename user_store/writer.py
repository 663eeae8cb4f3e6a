"""Batched writes of reviews and items, with exact inserted/updated/duplicate counts.

Callers own the transaction. Rows are plain tuples (not dataclasses) because
the importer pushes millions of them through here.

How a batch is counted, each row as if applied one after another:
- *inserted*: its (user, item) pair was new. Inserts append rowids, so their
  number is how far ``max(rowid)`` moved.
- *updated*: it replaced the stored review: newer timestamp, or the same
  timestamp with different content (the later line wins a tie).
- *duplicate*: it changed nothing (the stored review is identical or newer).
``cursor.rowcount`` after ``executemany`` is inserted + updated, since an upsert
whose WHERE fails changes no row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from .types import Item, Review

ReviewRow = tuple
"""(user_id, item_id, rating, title, text, timestamp_ms, helpful_votes, verified, source)"""

ItemRow = tuple
"""(id, title, description, categories_json, raw_json, metadata_missing)"""

_UPSERT_REVIEW = """
INSERT INTO reviews (
    user_id, item_id, rating, title, text, timestamp, helpful_votes, verified, source
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id, item_id) DO UPDATE SET
    rating = excluded.rating, title = excluded.title, text = excluded.text,
    timestamp = excluded.timestamp, helpful_votes = excluded.helpful_votes,
    verified = excluded.verified, source = excluded.source
WHERE excluded.timestamp > reviews.timestamp
   OR (excluded.timestamp = reviews.timestamp
       AND (excluded.rating IS NOT reviews.rating OR excluded.title IS NOT reviews.title
            OR excluded.text IS NOT reviews.text
            OR excluded.helpful_votes IS NOT reviews.helpful_votes
            OR excluded.verified IS NOT reviews.verified))
"""

_UPSERT_ITEM = """
INSERT INTO items (id, title, description, categories, raw, metadata_missing)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    title = excluded.title, description = excluded.description,
    categories = excluded.categories, raw = excluded.raw,
    metadata_missing = excluded.metadata_missing
WHERE excluded.title IS NOT items.title OR excluded.description IS NOT items.description
   OR excluded.categories IS NOT items.categories OR excluded.raw IS NOT items.raw
   OR excluded.metadata_missing IS NOT items.metadata_missing
"""


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]


def write_review_rows(conn: sqlite3.Connection, rows: Sequence[ReviewRow]) -> tuple[int, int, int]:
    """Upsert reviews, creating their users and (placeholder) items. Returns
    (inserted, updated, duplicates)."""
    if not rows:
        return 0, 0, 0
    conn.executemany(
        "INSERT OR IGNORE INTO users (id) VALUES (?)", [(u,) for u in {r[0] for r in rows}]
    )
    # An item known only from reviews gets its id as title until metadata arrives.
    conn.executemany(
        "INSERT OR IGNORE INTO items (id, title, metadata_missing) VALUES (?, ?, 1)",
        [(i, i) for i in {r[1] for r in rows}],
    )
    before = _max_rowid(conn, "reviews")
    changed = conn.executemany(_UPSERT_REVIEW, rows).rowcount
    inserted = _max_rowid(conn, "reviews") - before
    if inserted:
        # The rows above ``before`` are exactly the new ones; a review inserted and then
        # replaced within this batch is indexed once, with its final text.
        conn.execute(
            "INSERT INTO reviews_fts (rowid, title, text)"
            " SELECT rowid, title, text FROM reviews WHERE rowid > ?",
            (before,),
        )
    return inserted, changed - inserted, len(rows) - changed


def write_item_rows(conn: sqlite3.Connection, rows: Sequence[ItemRow]) -> tuple[int, int, int]:
    """Upsert item metadata. Returns (inserted, updated, duplicates)."""
    if not rows:
        return 0, 0, 0
    before = _max_rowid(conn, "items")
    changed = conn.executemany(_UPSERT_ITEM, rows).rowcount
    inserted = _max_rowid(conn, "items") - before
    return inserted, changed - inserted, len(rows) - changed


def review_row(review: Review, verified: bool | None = None) -> ReviewRow:
    return (
        review.user_id,
        review.item_id,
        float(review.rating),
        review.title,
        review.text,
        int(review.timestamp),
        int(review.helpful_votes),
        verified,
        review.source,
    )


def item_row(item: Item, raw: str | None = None) -> ItemRow:
    return (
        item.id,
        item.title,
        item.description,
        json.dumps(list(item.categories), ensure_ascii=False),
        raw,
        int(item.metadata_missing),
    )


def write_reviews(conn: sqlite3.Connection, reviews: Sequence[Review]) -> tuple[int, int, int]:
    return write_review_rows(conn, [review_row(r) for r in reviews])


def write_items(
    conn: sqlite3.Connection, items: Sequence[Item], raw: Mapping[str, str]
) -> tuple[int, int, int]:
    return write_item_rows(conn, [item_row(i, raw.get(i.id)) for i in items])
