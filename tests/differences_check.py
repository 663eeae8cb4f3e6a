"""What a real model's differences answers must look like, for the tests that run one.

Under the ``dpl`` preset each answer is either JSON that the real differences schema accepts,
with its three fields carried over verbatim (trimmed), or the model's text kept and flagged
``structured=False`` because it gave no valid JSON (in practice: the answer ran past the
token limit). Counting entries is not enough: an engine that fell back every time would pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from dpl_engine.method.prompts import DIFFERENCES_SCHEMA, DIMENSIONS
from dpl_engine.types import Differences


def as_differences(entry: Differences | Mapping) -> Differences:
    """The engine's type, or its JSON form as the CLI prints it."""
    return entry if isinstance(entry, Differences) else Differences(**entry)


def fallbacks(entries: Iterable[Differences | Mapping]) -> tuple[int, int]:
    """(parsed, fallbacks) over ``entries``; fails on any entry that is neither."""
    import jsonschema

    parsed = kept = 0
    for entry in map(as_differences, entries):
        if entry.structured:
            value = json.loads(entry.raw)
            jsonschema.validate(value, DIFFERENCES_SCHEMA)
            got = tuple(getattr(entry, key) for key in DIMENSIONS)
            assert got == tuple(value[key].strip() for key in DIMENSIONS), entry
            parsed += 1
        else:
            assert entry.raw.strip() and not (entry.writing or entry.emotional or entry.semantic)
            kept += 1
    return parsed, kept


def assert_read(entries: Iterable[Differences | Mapping], *, max_fallback_share: float) -> int:
    """Every entry well formed, and at most ``max_fallback_share`` of them free-text
    fallbacks; returns how many parsed."""
    parsed, kept = fallbacks(entries)
    total = parsed + kept
    assert total, "no differences to check"
    assert kept <= max_fallback_share * total, (
        f"{kept} of {total} differences answers fell back to free text "
        f"(at most {max_fallback_share:.0%} accepted)"
    )
    return parsed
