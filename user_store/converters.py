"""Rows to values: the one place that knows both the column layout and the dataclasses.

Every query in the store selects the columns listed here, in this order, so a
row can be turned into its dataclass by position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .types import ImportRun, Item, Review, StoredGeneration

REVIEW_COLUMNS = (
    "r.user_id, r.item_id, r.rating, r.title, r.text, r.timestamp, r.helpful_votes, r.source"
)
ITEM_COLUMNS = "i.id, i.title, i.description, i.categories, i.metadata_missing"
IMPORT_RUN_COLUMNS = (
    "id, file, format, started_at, finished_at, read, inserted, updated, duplicates, rejected"
)
GENERATION_COLUMNS = (
    "id, user_id, item_id, method, model_id, prompt_version, params, text, stats, created_at"
)


def review(row: Sequence[Any]) -> Review:
    return Review(
        user_id=row[0],
        item_id=row[1],
        rating=float(row[2]),
        title=row[3],
        text=row[4],
        timestamp=int(row[5]),
        helpful_votes=int(row[6]),
        source=row[7],
    )


def item(row: Sequence[Any]) -> Item:
    return Item(
        id=row[0],
        title=row[1],
        description=row[2],
        categories=tuple(json.loads(row[3] or "[]")),
        metadata_missing=bool(row[4]),
    )


def import_run(row: Sequence[Any]) -> ImportRun:
    return ImportRun(
        id=row[0],
        file=row[1],
        format=row[2],
        started_at=row[3],
        finished_at=row[4],
        read=row[5],
        inserted=row[6],
        updated=row[7],
        duplicates=row[8],
        rejected=row[9],
    )


def generation(row: Sequence[Any]) -> StoredGeneration:
    return StoredGeneration(
        id=row[0],
        user_id=row[1],
        item_id=row[2],
        method=row[3],
        model_id=row[4],
        prompt_version=row[5],
        params=json.loads(row[6]),
        text=row[7],
        stats=json.loads(row[8]),
        created_at=row[9],
    )


def vector_blob(vector: Any) -> tuple[int, bytes]:
    """(dimension, little-endian float32 bytes) of a 1-d vector."""
    import numpy as np

    arr = np.asarray(vector, dtype="<f4")
    if arr.ndim != 1:
        raise ValueError(f"an embedding must be one-dimensional, got shape {arr.shape}")
    return arr.shape[0], arr.tobytes()


def blob_vector(blob: bytes, dim: int):  # -> np.ndarray
    import numpy as np

    arr = np.frombuffer(blob, dtype="<f4")
    if arr.shape[0] != dim:
        raise ValueError(f"stored embedding has {arr.shape[0]} values, expected {dim}")
    return arr.astype(np.float32)
