"""Values the engine produces and the front ends show. Frozen, plain, JSON-friendly."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from models import ChatMessage, GenerationStats, SamplingParams
from user_store import HistoryEntry, Item, Review

PresetName = Literal["dpl", "paper"]
"""The two ways to run the method (see ``method.presets``)."""
Method = Literal["none", "rag", "profile", "dpl"]
METHODS: tuple[Method, ...] = ("none", "rag", "profile", "dpl")


@dataclass(frozen=True)
class EngineConfig:
    k: int = 8
    """How many past reviews BM25 retrieves."""
    m: int = 4
    """An item is a comparison item when at least m other users reviewed it."""
    n: int = 4
    """Representative comparison users per item (KMeans uses n + 1 clusters)."""
    seed: int = 42
    """Seed for KMeans and for sampling."""
    generation: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=384))
    analysis: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=320))
    """Sampling for the difference-extraction and profile calls."""
    max_review_chars: int = 1500
    """Reviews longer than this are shortened inside prompts."""
    preset: PresetName = "dpl"
    """'dpl' (dpl's retrieval, clustering and prompts) or 'paper' (the published choices)."""
    measured_in_profile: bool = False
    """Give the ``dpl`` profile prompt the measured account beside the LLM's differences."""
    drop_uninformative: bool = False
    """Leave the LLM differences flagged as uninformative out of the ``dpl`` profile prompt."""
    max_description_chars: int | None = None
    """Item descriptions longer than this are shortened inside prompts; None keeps them
    whole (on real Amazon metadata a single description can run to 11,000 characters)."""


@dataclass(frozen=True)
class Target:
    """What to generate: the user's review of ``item`` with the given rating and title."""

    user_id: str
    item: Item
    rating: float
    title: str
    held_out: Review | None = None
    """The user's real review of the item, if any: hidden from every step of the method."""


@dataclass(frozen=True)
class Retrieved:
    entry: HistoryEntry
    score: float
    rank: int


@dataclass(frozen=True)
class ComparisonUser:
    user_id: str
    cluster: int
    distance: float
    """Euclidean distance of the review's embedding to its cluster centre."""
    similarity: float
    """Cosine similarity to the target user's review of the same item."""
    rating: float
    review: Review


@dataclass(frozen=True)
class ComparisonSet:
    item: Item
    user_review: Review
    users: tuple[ComparisonUser, ...]
    reviewers: int
    """How many other reviewers were clustered."""


@dataclass(frozen=True)
class TextMeasures:
    rating: float
    words: float
    sentence_words: float
    lexical_diversity: float
    exclamations_per_100_words: float
    first_person_per_100_words: float
    sentiment: float
    """-1 (negative) .. 1 (positive), lexicon-based."""
    reading_ease: float
    """Flesch reading ease: higher is easier to read (60-70 is plain English)."""
    questions_per_100_words: float


@dataclass(frozen=True)
class MeasuredDifferences:
    item_id: str
    user: TextMeasures
    others: TextMeasures
    """Mean over the representative users."""


@dataclass(frozen=True)
class Differences:
    item_id: str
    writing: str
    emotional: str
    semantic: str
    structured: bool = True
    """False when the model never produced valid JSON and ``raw`` free text was kept."""
    raw: str = ""


@dataclass(frozen=True)
class Profile:
    kind: Literal["dpl", "profile"]
    text: str


@dataclass(frozen=True)
class ProgressEvent:
    step: str
    """'retrieve', 'embed', 'compare', 'measure', 'differences', 'profile', 'generate'."""
    i: int
    n: int
    cached: bool = False
    detail: str = ""
    value: Any = None
    """What just arrived, when the step has it, so front ends can show each result as
    soon as it is ready, and the items still to come: a ComparisonSet per item for
    'compare'; the list of MeasuredDifferences, one per comparison item, for 'measure'
    (before any LLM call); a Differences per item for 'differences'; a TokenEvent per
    text delta while 'profile' is written (a profile cut short is never stored)."""


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class GenerationResult:
    target: Target
    method: Method
    text: str
    model_id: str
    prompt_version: str
    messages: tuple[ChatMessage, ...]
    """The exact prompt sent for the final generation."""
    stats: GenerationStats | None
    retrieved: tuple[Retrieved, ...] = ()
    comparisons: tuple[ComparisonSet, ...] = ()
    measured: tuple[MeasuredDifferences, ...] = ()
    differences: tuple[Differences, ...] = ()
    profile: Profile | None = None
    notes: tuple[str, ...] = ()
    """What the engine had to drop or shorten to fit the context, and similar."""
    llm_calls: int = 0
    """LLM calls made for this result (cached steps make none)."""
    cancelled: bool = False
    generation_id: int | None = None


@dataclass(frozen=True)
class ResultEvent:
    result: GenerationResult


Event = ProgressEvent | TokenEvent | ResultEvent


class CancelToken:
    """Set from any thread; the engine checks it between steps and on every token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Cancelled(Exception):
    """Raised inside the engine when its CancelToken is set (between steps or within a token)."""
