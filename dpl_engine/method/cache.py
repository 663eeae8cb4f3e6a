"""Turning engine values into JSON for the store's artifact cache, and back.

The store keeps artifacts as JSON; the engine works with frozen dataclasses.
Cache keys carry a digest of every input a result was computed from (the
texts, the chosen users, the parameters), so a changed input can never be
answered from a stale entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from typing import Any

from user_store import HistoryEntry, Item, Review

from ..types import ComparisonSet, ComparisonUser, Differences, Profile, Retrieved


def to_json(value: Any) -> Any:
    """A JSON-ready copy of a dataclass (or list/tuple/dict of them)."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def digest(value: Any) -> str:
    """A short, canonical hash of a JSON-able value (dataclasses included)."""
    blob = json.dumps(to_json(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def item_from_json(d: dict[str, Any]) -> Item:
    return Item(**{**d, "categories": tuple(d.get("categories", ()))})


def review_from_json(d: dict[str, Any]) -> Review:
    return Review(**d)


def entry_from_json(d: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(review=review_from_json(d["review"]), item=item_from_json(d["item"]))


def retrieved_from_json(d: dict[str, Any]) -> Retrieved:
    return Retrieved(entry=entry_from_json(d["entry"]), score=d["score"], rank=d["rank"])


def comparison_from_json(d: dict[str, Any]) -> ComparisonSet:
    users = tuple(
        ComparisonUser(**{**u, "review": review_from_json(u["review"])}) for u in d["users"]
    )
    return ComparisonSet(
        item=item_from_json(d["item"]),
        user_review=review_from_json(d["user_review"]),
        users=users,
        reviewers=d["reviewers"],
    )


def differences_from_json(d: dict[str, Any]) -> Differences:
    return Differences(**d)


def profile_from_json(d: dict[str, Any]) -> Profile:
    return Profile(**d)
