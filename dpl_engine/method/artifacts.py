"""The engine's cached results: what each kind is called in the store, its JSON form, and
the one way a step reads or makes it.

Comparison sets, differences and profiles are all cached the same way: looked up by key
unless the caller asks for a refresh, computed on a miss, and stored only once complete,
so a cancel or a failure never leaves half a result behind. Writing that here once keeps
the three steps from drifting apart.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from user_store import ArtifactKey, UserStore

from ..types import ComparisonSet, Differences, Profile, ProgressEvent
from .cache import comparison_from_json, differences_from_json, profile_from_json, to_json

T = TypeVar("T")
Step = Generator[ProgressEvent, None, T]


@dataclass(frozen=True)
class Artifact(Generic[T]):
    """One kind of cached result."""

    kind: str
    """Its name in the store's artifacts table."""
    dump: Callable[[T], Any]
    """The value as the JSON the store keeps."""
    load: Callable[[Any], T]
    """That JSON back as the value."""


def _with_notes(name: str, load: Callable[[Any], T]) -> Artifact[tuple[T, list[str]]]:
    """A result kept together with the notes made while computing it."""
    return Artifact(
        kind=name,
        dump=lambda value: {name: to_json(value[0]), "notes": value[1]},
        load=lambda stored: (load(stored[name]), stored["notes"]),
    )


COMPARISON: Artifact[ComparisonSet] = Artifact("comparison", to_json, comparison_from_json)
DIFFERENCES: Artifact[tuple[Differences, list[str]]] = _with_notes(
    "differences", differences_from_json
)
PROFILE: Artifact[tuple[Profile, list[str]]] = _with_notes("profile", profile_from_json)


def lookup(store: UserStore, artifact: Artifact[T], key: ArtifactKey, *, refresh: bool) -> T | None:
    """The stored value under ``key``; None when there is none or ``refresh`` is set."""
    if refresh:
        return None
    stored = store.get_artifact(artifact.kind, key)
    return None if stored is None else artifact.load(stored)


def keep(store: UserStore, artifact: Artifact[T], key: ArtifactKey, value: T) -> None:
    """Store a complete value under ``key``."""
    store.put_artifact(artifact.kind, key, artifact.dump(value))


def cached(
    store: UserStore, artifact: Artifact[T], key: ArtifactKey, compute: Step[T], *, refresh: bool
) -> Step[tuple[T, bool]]:
    """The value under ``key`` and True when it was stored; otherwise ``compute``'s events,
    then its value (stored) and False.

    ``compute`` is a generator not yet started, so nothing of it runs on a hit; on a miss
    its value is stored only when it returns, never when it raises."""
    found = lookup(store, artifact, key, refresh=refresh)
    if found is not None:
        return found, True
    value = yield from compute
    keep(store, artifact, key, value)
    return value, False
