"""The review and metadata layouts ``dpl ingest`` understands, and their validation.

A record is one parsed line (a JSON object or a CSV row as a dict). Each layout
maps its field names onto one review row; anything that cannot become a valid
review raises ``BadRecord`` with a reason a person can read.

- amazon2023: ``user_id, parent_asin, asin, rating, title, text, timestamp (ms),
  helpful_vote, verified_purchase`` (metadata: ``parent_asin, title, description``
  list, ``categories``, ...).
- amazon2014: ``reviewerID, asin, overall, summary, reviewText, unixReviewTime (s),
  helpful [up, total]`` (metadata: ``asin, title, description`` string, ``categories``
  list of lists).
- amazon2018: like 2014 plus ``vote`` (a string such as "1,234"), ``verified``,
  ``style`` (metadata: ``category`` list, ``description`` list).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .writer import ItemRow, ReviewRow

REVIEW_LAYOUTS = ("amazon2023", "amazon2014", "amazon2018")
FORMATS = ("auto", *REVIEW_LAYOUTS, "csv")

MIN_RATING, MAX_RATING = 1.0, 5.0
_SECONDS_BEFORE = 100_000_000_000
"""Timestamps below this are taken as seconds (it is 1973 in ms but the year 5138 in s)."""


class BadRecord(ValueError):
    """One record cannot be imported; ``str(err)`` says why."""


def detect_layout(record: dict[str, Any]) -> str | None:
    """The review layout a record is written in, 'meta' for item metadata, or None."""
    if "user_id" in record:
        return "amazon2023"
    if "reviewerID" in record:
        if "vote" in record or "verified" in record or "style" in record:
            return "amazon2018"
        return "amazon2014"
    if "parent_asin" in record or "asin" in record:
        return "meta"
    return None


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if type(value) is str:
        if not value.isascii():
            _check_encodable(value, key)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadRecord(f"{key} is a {type(value).__name__}, not text")


def _check_encodable(value: str, key: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(f"{key} holds invalid UTF-8 (an unpaired surrogate)") from None


def _ident(record: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = record.get(key)
        if type(value) is str:
            value = value.strip()
            if value:
                if not value.isascii():
                    _check_encodable(value, key)
                return value
        elif type(value) is int:
            return str(value)
    raise BadRecord(f"missing {' or '.join(keys)}")


def _rating(value: Any, key: str) -> float:
    if type(value) is not float:
        if value is None:
            raise BadRecord(f"missing {key}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise BadRecord(f"{key} {value!r} is not a number")
        try:
            value = float(value)
        except ValueError:
            raise BadRecord(f"{key} {_short(value)!r} is not a number") from None
    if not MIN_RATING <= value <= MAX_RATING:  # also rejects NaN
        raise BadRecord(f"{key} {value!r} is outside {MIN_RATING:g}..{MAX_RATING:g}")
    return value


def _int(value: Any, key: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and math.isfinite(value) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.replace(",", "").strip()))
        except ValueError:
            pass
    raise BadRecord(f"{key} {_short(value)!r} is not a whole number")


def _short(value: Any, limit: int = 40) -> Any:
    return value[:limit] + "..." if isinstance(value, str) and len(value) > limit else value


def _timestamp_ms(record: dict[str, Any], key: str, *, seconds: bool) -> int:
    value = record.get(key)
    if value is None or value == "":
        raise BadRecord(f"missing {key}")
    ts = _int(value, key)
    if ts < 0:
        raise BadRecord(f"{key} {ts} is negative")
    if seconds or ts < _SECONDS_BEFORE:
        ts *= 1000
    return ts


def _verified(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return int(value.strip().lower() in ("true", "1", "yes", "y"))
    return int(bool(value))


def review_row(record: dict[str, Any], layout: str) -> ReviewRow:
    """One review row from a record in ``layout``; raises BadRecord."""
    if layout == "amazon2023":
        row = _fast_2023(record)
        if row is not None:
            return row
        user = _ident(record, "user_id")
        item = _ident(record, "parent_asin", "asin")
        rating = _rating(record.get("rating"), "rating")
        title = _text(record, "title")
        text = _text(record, "text")
        ts = _timestamp_ms(record, "timestamp", seconds=False)
        votes = record.get("helpful_vote")
        helpful = 0 if votes in (None, "") else _int(votes, "helpful_vote")
        verified = _verified(record.get("verified_purchase"))
    else:
        user = _ident(record, "reviewerID")
        item = _ident(record, "asin")
        rating = _rating(record.get("overall"), "overall")
        title = _text(record, "summary")
        text = _text(record, "reviewText")
        if record.get("unixReviewTime") not in (None, ""):
            ts = _timestamp_ms(record, "unixReviewTime", seconds=True)
        else:
            ts = _review_time_ms(record.get("reviewTime"))
        helpful = _helpful_2014_2018(record)
        verified = _verified(record.get("verified"))
    if helpful < 0:
        raise BadRecord(f"helpful votes {helpful} is negative")
    return (user, item, rating, title, text, ts, helpful, verified, layout)


def _fast_2023(record: dict[str, Any]) -> ReviewRow | None:
    """The common case, checked cheaply: well-typed ASCII fields. None sends the record
    through the careful path, which gives the reason when something is wrong."""
    get = record.get
    user, item, rating, title, text, ts, votes = (
        get("user_id"),
        get("parent_asin"),
        get("rating"),
        get("title"),
        get("text"),
        get("timestamp"),
        get("helpful_vote", 0),
    )
    if (
        type(user) is str
        and type(item) is str
        and type(title) is str
        and type(text) is str
        and type(rating) is float
        and type(ts) is int
        and type(votes) is int
        and 1.0 <= rating <= 5.0
        and ts >= _SECONDS_BEFORE
        and votes >= 0
        and user.isascii()
        and item.isascii()
        and user.strip() == user
        and user
        and item.strip() == item
        and item
        and (title.isascii() or _encodable(title))
        and (text.isascii() or _encodable(text))
    ):
        return (
            user,
            item,
            rating,
            title,
            text,
            ts,
            votes,
            _verified(get("verified_purchase")),
            "amazon2023",
        )
    return None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _helpful_2014_2018(record: dict[str, Any]) -> int:
    helpful = record.get("helpful")
    if isinstance(helpful, list) and helpful:
        return _int(helpful[0], "helpful")
    if isinstance(helpful, str) and helpful.startswith("["):
        try:
            parsed = json.loads(helpful)
        except ValueError:
            raise BadRecord(f"helpful {_short(helpful)!r} is not a [up, total] pair") from None
        return _int(parsed[0], "helpful") if parsed else 0
    vote = record.get("vote")
    if vote not in (None, ""):
        return _int(vote, "vote")
    return 0


def _review_time_ms(value: Any) -> int:
    """2014 files also carry 'MM DD, YYYY'; use it when unixReviewTime is absent."""
    import datetime as dt

    if not isinstance(value, str) or not value.strip():
        raise BadRecord("missing unixReviewTime (and reviewTime)")
    try:
        day = dt.datetime.strptime(value.strip(), "%m %d, %Y").replace(tzinfo=dt.UTC)
    except ValueError:
        raise BadRecord(f"reviewTime {_short(value)!r} is not 'MM DD, YYYY'") from None
    return int(day.timestamp()) * 1000


def item_row(record: dict[str, Any], raw: str) -> ItemRow:
    """One item row from a metadata record (any layout); raises BadRecord."""
    item_id = _ident(record, "parent_asin", "asin")
    title = record.get("title")
    title = title.strip() if isinstance(title, str) else ""
    description = record.get("description")
    if isinstance(description, list):
        description = "\n".join(str(p) for p in description if isinstance(p, str) and p.strip())
    elif not isinstance(description, str):
        description = ""
    categories = _categories(record.get("categories", record.get("category")))
    missing = bool(record.get("metadata_missing")) or not (title or description)
    for key, value in (("title", title), ("description", description)):
        if not value.isascii():
            _check_encodable(value, key)
    return (
        item_id,
        title or item_id,
        description,
        json.dumps(categories, ensure_ascii=False),
        raw,
        int(missing),
    )


def _categories(value: Any) -> list[str]:
    """A flat, de-duplicated list: 2014 metadata nests category paths in lists."""
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop(0)
        if isinstance(v, list):
            stack[:0] = v
        elif isinstance(v, str) and v.strip() and v.strip() not in out:
            out.append(v.strip())
    return out
