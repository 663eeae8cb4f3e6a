"""The DPL pipeline as one object over a store and two models.

CONTRACT SKELETON: the front ends (CLI, TUI, eval) call these methods; the
bodies delegate to one module per step (retrieval, selection, differences,
summary, generation).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from models import Embedder, SamplingParams, TextGenerator
from user_store import UserStore

from .types import (
    CancelToken,
    ComparisonSet,
    Differences,
    EngineConfig,
    Event,
    GenerationResult,
    MeasuredDifferences,
    Method,
    Profile,
    ProgressEvent,
    Retrieved,
    Target,
)

Progress = Callable[[ProgressEvent], None]


class Engine:
    def __init__(
        self,
        store: UserStore,
        generator: TextGenerator | Callable[[], TextGenerator],
        embedder: Embedder | Callable[[], Embedder],
        config: EngineConfig | None = None,
        *,
        exclude_reviews: Collection[tuple[str, str]] = (),
    ) -> None:
        """Models may be given as zero-argument factories: they load on first use.

        ``exclude_reviews``: (user_id, item_id) reviews the method must never see,
        neither in retrieval nor as comparison candidates (an evaluation split passes
        every user's held-out targets here). It is part of every cache key."""
        raise NotImplementedError

    # targets
    def held_out_target(self, user_id: str) -> Target:
        """The user's most recent review as the target; it is hidden from the method."""
        raise NotImplementedError

    def target(self, user_id: str, item_id: str, *, rating: float, title: str) -> Target:
        """Any item; if the user reviewed it, that review is held out."""
        raise NotImplementedError

    # the steps (each cached in the store; ``refresh`` recomputes)
    def retrieve(self, target: Target) -> list[Retrieved]: ...

    def comparisons(
        self, target: Target, *, progress: Progress | None = None,
        cancel: CancelToken | None = None, refresh: bool = False,
    ) -> list[ComparisonSet]: ...

    def measured(self, comparisons: list[ComparisonSet]) -> list[MeasuredDifferences]: ...

    def differences(
        self, target: Target, *, progress: Progress | None = None,
        cancel: CancelToken | None = None, refresh: bool = False,
    ) -> list[Differences]: ...

    def profile(
        self, target: Target, kind: str = "dpl", *, progress: Progress | None = None,
        cancel: CancelToken | None = None, refresh: bool = False,
    ) -> Profile: ...

    # generation
    def run(
        self, target: Target, method: Method = "dpl", *, cancel: CancelToken | None = None,
        refresh: bool = False, sampling: SamplingParams | None = None,
    ) -> Iterator[Event]:
        """Prepare what ``method`` needs, then stream the review.

        Yields ProgressEvent for each step, TokenEvent per text delta, and one
        final ResultEvent (also when cancelled: ``result.cancelled`` is True)."""
        raise NotImplementedError

    def generate(self, target: Target, method: Method = "dpl", **kw: object) -> GenerationResult:
        """``run`` to completion, returning the result."""
        raise NotImplementedError
