"""The DPL pipeline as one object over a store and two models.

Front ends (CLI, TUI, evaluation) call these methods; each step lives in its
own module under ``method`` (retrieval, selection, differences, profile,
generation) and its result is cached in the store through ``method.artifacts``,
so asking again recomputes only the generation. Steps are written as generators
of ProgressEvent that return their value, so ``run`` can stream progress and
tokens from one loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from models import ChatMessage, Embedder, GenerationStats, SamplingParams, TextGenerator
from user_store import ArtifactKey, HistoryEntry, Review, UserStore

from .errors import EngineError, NotEnoughHistoryError
from .method import (
    artifacts,
    concurrent,
    describe,
    generation,
    informative,
    presets,
    prompts,
    retrieval,
    selection,
)
from .method import differences as differences_step
from .method import profile as profile_step
from .method.artifacts import Step
from .method.cache import digest
from .method.measures import has_text, measured_differences
from .types import (
    METHODS,
    Cancelled,
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
    ResultEvent,
    Retrieved,
    Target,
    TokenEvent,
)

Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Prepared:
    """What ``Engine.prepare`` made ready for one target."""

    target: Target
    items: int
    """Comparison items whose differences are now cached."""
    llm_calls: int
    """Calls it had to make (0 when everything was cached already)."""


T = TypeVar("T")


@dataclass
class _Run:
    """What one call accumulates: LLM calls made, notes, and the cancel token."""

    cancel: CancelToken | None
    refresh: bool
    calls: int = 0
    notes: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled()


@dataclass
class _Inputs:
    """What a generation's prompt was built from, filled in as the steps finish."""

    retrieved: list[Retrieved] = field(default_factory=list)
    comparisons: list[ComparisonSet] = field(default_factory=list)
    measured: list[MeasuredDifferences] = field(default_factory=list)
    found: list[Differences] = field(default_factory=list)
    profile: Profile | None = None


def _drive(step: Step[T], progress: Progress | None) -> T:
    while True:
        try:
            event = next(step)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


def _arrived(
    comparison: ComparisonSet, value: Differences, done: int, total: int, *, cached: bool
) -> ProgressEvent:
    """One item's differences arrived, the ``done``-th of ``total``."""
    free_text = "" if value.structured else " (free text)"
    return ProgressEvent(
        "differences",
        done,
        total,
        cached=cached,
        detail=comparison.item.title + free_text,
        value=value,
    )


def _stream(
    writer: TextGenerator,
    messages: list[ChatMessage],
    params: SamplingParams,
    cancel: CancelToken | None,
) -> Generator[TokenEvent, None, tuple[str, GenerationStats | None, bool]]:
    """The writer's answer, each delta as a TokenEvent, until it ends or ``cancel`` is set.
    Returns the text, the stream's stats and whether it was cancelled; the stream is closed
    either way."""
    waiting: dict[str, Any] = {}
    if writer.stops_while_waiting and cancel is not None:
        waiting["stop"] = lambda: cancel.cancelled  # a busy server's queue included
    stream = writer.stream(messages, params, **waiting)
    parts: list[str] = []
    cancelled = False
    try:
        for delta in stream:
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            parts.append(delta)
            yield TokenEvent(delta)
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
    finally:
        stream.close()
    if stream.stats is not None and stream.stats.finish_reason == "cancelled":
        cancelled = True  # stopped by the stop check before a token came: never stored
    return "".join(parts), stream.stats, cancelled


class Engine:
    def __init__(
        self,
        store: UserStore,
        generator: TextGenerator | Callable[[], TextGenerator],
        embedder: Embedder | Callable[[], Embedder],
        config: EngineConfig | None = None,
        *,
        exclude_reviews: Collection[tuple[str, str]] = (),
        embedder_id: str | None = None,
        analyst: TextGenerator | Callable[[], TextGenerator] | None = None,
        personal: Callable[[str], TextGenerator | None] | None = None,
    ) -> None:
        """Models may be given as zero-argument factories: they load on first use.

        ``analyst``: the model that reads the user (the differences and the profiles) when it
        is not the one that writes the review: an adapter's teacher, or the base model of a
        generator that carries an adapter trained on prompts the base model's reading made.
        Default: ``generator`` does both.

        ``personal``: given a user id, the writer to use for that user's reviews instead of
        ``generator`` (the task adapter with the user's own adapter on top), or None.

        ``exclude_reviews``: (user_id, item_id) reviews the method must never see,
        neither in retrieval nor as comparison candidates (an evaluation split passes
        every user's held-out targets here). Cache keys hash the inputs each result
        was computed from, so results under different exclusions never mix.

        ``embedder_id``: the embedder's model id when known without loading it; a
        run whose comparisons are all cached then never loads the embedder."""
        self.store = store
        self.config = config or EngineConfig()
        self.preset = replace(
            presets.preset(self.config.preset),
            description_chars=self.config.max_description_chars,
        )
        self.exclude = frozenset((str(u), str(i)) for u, i in exclude_reviews)
        self._generator = generator if isinstance(generator, TextGenerator) else None
        self._generator_factory = None if self._generator is not None else generator
        self._embedder = embedder if isinstance(embedder, Embedder) else None
        self._embedder_factory = None if self._embedder is not None else embedder
        self._embedder_id = embedder_id
        self._analyst = analyst if isinstance(analyst, TextGenerator) else None
        self._analyst_factory = None if isinstance(analyst, TextGenerator) else analyst
        self._personal = personal
        self._load_lock = threading.Lock()

    # -- models (loaded on first use) ---------------------------------------------
    @property
    def generator(self) -> TextGenerator:
        with self._load_lock:
            if self._generator is None:
                assert self._generator_factory is not None
                self._generator = self._generator_factory()  # type: ignore[operator]
            return self._generator

    @property
    def analyst(self) -> TextGenerator:
        """The model that writes the differences and the profiles."""
        if self._analyst is None and self._analyst_factory is None:
            return self.generator
        with self._load_lock:
            if self._analyst is None:
                assert self._analyst_factory is not None
                self._analyst = self._analyst_factory()
            return self._analyst

    def writer(self, user_id: str) -> TextGenerator:
        """The model that writes ``user_id``'s reviews: their own adapter's view, if any."""
        if self._personal is not None:
            found = self._personal(user_id)
            if found is not None:
                return found
        return self.generator

    @property
    def has_analyst(self) -> bool:
        """Whether the differences and profiles come from a model other than the writer."""
        return self._analyst is not None or self._analyst_factory is not None

    @property
    def embedder(self) -> Embedder:
        with self._load_lock:
            if self._embedder is None:
                assert self._embedder_factory is not None
                self._embedder = self._embedder_factory()  # type: ignore[operator]
            return self._embedder

    @property
    def embedder_id(self) -> str:
        if self._embedder is not None:
            return self._embedder.model_id
        return self._embedder_id or self.embedder.model_id

    # -- targets ------------------------------------------------------------------
    def held_out_target(self, user_id: str) -> Target:
        """The user's most recent review with text as the target; it is hidden from the method."""
        history = self.store.user_history(user_id)
        with_text = [e for e in history.entries if has_text(e.review)]
        if not with_text:
            raise NotEnoughHistoryError(
                f"User {user_id!r} has no review with any text to hold out. Pick another user."
            )
        latest = with_text[-1]
        if len(with_text) < 2:
            raise NotEnoughHistoryError(
                f"User {user_id!r} has only one review with text; holding it out leaves nothing "
                "to learn from. Pick a user with more reviews (`dpl users`)."
            )
        return Target(
            user_id=user_id,
            item=latest.item,
            rating=float(latest.review.rating),
            title=latest.review.title,
            held_out=latest.review,
        )

    def target(self, user_id: str, item_id: str, *, rating: float, title: str) -> Target:
        """Any item; if the user reviewed it, that review is held out."""
        if not 1 <= float(rating) <= 5:
            raise EngineError(f"Rating {rating!r} is out of range: give a number from 1 to 5.")
        self.store.user_history(user_id)  # raises UnknownUserError for an unknown user
        item = self.store.item(item_id)
        held = self.store.review(user_id, item_id)
        return Target(user_id=user_id, item=item, rating=float(rating), title=title, held_out=held)

    def _hidden(self, review: Review) -> bool:
        return (review.user_id, review.item_id) in self.exclude

    def _history(self, target: Target) -> list[HistoryEntry]:
        """What the method may see of the user: every other review with text, nothing hidden."""
        entries = self.store.user_history(target.user_id).entries
        return [
            e
            for e in entries
            if e.item.id != target.item.id and has_text(e.review) and not self._hidden(e.review)
        ]

    # -- the steps ------------------------------------------------------------------
    def _retrieve(self, target: Target) -> Step[list[Retrieved]]:
        history = self._history(target)
        found = retrieval.rank(history, target, self.config.k, self.preset)
        yield ProgressEvent("retrieve", 1, 1, detail=f"{len(found)} of {len(history)} past reviews")
        return found

    def retrieve(self, target: Target) -> list[Retrieved]:
        """The k past reviews most relevant to the target (BM25 within the user's history)."""
        return _drive(self._retrieve(target), None)

    def _others(self, user_review: Review) -> list[Review]:
        return [
            r
            for r in self.store.reviews_of_item(
                user_review.item_id, exclude_user=user_review.user_id
            )
            if has_text(r) and not self._hidden(r)
        ]

    def _comparable(
        self, target: Target, limit: int | None = None
    ) -> tuple[list[tuple[Retrieved, list[Review]]], int]:
        """The BM25 top ``limit`` (default k) of the eligible items, and how many are eligible."""
        cfg = self.config
        history = self._history(target)
        others = {e.item.id: self._others(e.review) for e in history}
        eligible = [e for e in history if len(others[e.item.id]) >= cfg.m]
        chosen = retrieval.rank(eligible, target, limit or cfg.k, self.preset)
        return [(r, others[r.entry.item.id]) for r in chosen], len(eligible)

    def comparison_items(self, target: Target) -> tuple[list[Retrieved], int]:
        """The items to compare on, best first, and how many were eligible.

        Eligible: the user's visible past items with at least m other visible reviewers.
        Of those, the BM25 top k for the target (the same query as retrieval), so they
        are chosen apart from the k retrieved past reviews and need not be among them."""
        chosen, eligible = self._comparable(target)
        return [r for r, _ in chosen], eligible

    def _comparisons(self, target: Target, run: _Run) -> Step[list[ComparisonSet]]:
        cfg = self.config
        chosen, eligible = self._comparable(target)
        candidates = [(r.entry, others) for r, others in chosen]
        total = len(candidates)
        detail = f"{total} comparison items: the BM25 top {cfg.k} of {eligible} past items "
        detail += f"with >= {cfg.m} other reviewers"
        if total < cfg.k:
            run.notes.append(
                f"only {total} of the user's past items have >= {cfg.m} other reviewers, "
                f"so differences come from {total} items, not {cfg.k}"
            )
        yield ProgressEvent("compare", 0, total, detail=detail)
        return (yield from self._compare_items(candidates, run))

    def _compare_items(
        self, candidates: list[tuple[HistoryEntry, list[Review]]], run: _Run
    ) -> Step[list[ComparisonSet]]:
        """Representative comparison users of each (user's entry, other reviews) pair."""
        total = len(candidates)
        sets: list[ComparisonSet] = []
        for i, (entry, others) in enumerate(candidates, start=1):
            run.check()
            found, cached = yield from artifacts.cached(
                self.store,
                artifacts.COMPARISON,
                self._comparison_key(entry, others),
                self._choose(entry, others, i, total),
                refresh=run.refresh,
            )
            if cached:
                yield ProgressEvent("embed", i, total, cached=True, detail=entry.item.title)
            sets.append(found)
            yield ProgressEvent(
                "compare",
                i,
                total,
                cached=cached,
                detail=f"{entry.item.title}: {len(found.users)} of {found.reviewers} chosen",
                value=found,
            )
        return sets

    def _comparison_key(self, entry: HistoryEntry, others: list[Review]) -> ArtifactKey:
        reviews = [entry.review, *others]
        # Only the paper's rule is named in the key, so dpl's cached sets keep their keys.
        rule = {"rule": selection.PAPER_RULE} if self.preset.selection == "paper" else {}
        return ArtifactKey(
            user_id=entry.review.user_id,
            item_key=entry.item.id,
            model_id=self.embedder_id,
            prompt_version="",
            params={
                "n": self.config.n,
                "seed": self.preset.kmeans_random_state(self.config.seed),
                "n_init": self.preset.kmeans_n_init,
                "inputs": digest([(r.user_id, r.rating, r.title, r.text) for r in reviews]),
                **rule,
            },
        )

    def _choose(
        self, entry: HistoryEntry, others: list[Review], i: int, total: int
    ) -> Step[ComparisonSet]:
        """Embed the item's reviews (those not cached yet) and cluster them."""
        reviews = [entry.review, *others]
        vectors, fresh = selection.embed_reviews(
            self.store, self.embedder, reviews, model_id=self.embedder_id
        )
        yield ProgressEvent(
            "embed",
            i,
            total,
            cached=fresh == 0,
            detail=f"{entry.item.title}: {fresh} embedded, {len(reviews) - fresh} cached",
        )
        n, seed = self.config.n, self.preset.kmeans_random_state(self.config.seed)
        if self.preset.selection == "paper":
            users = selection.paper_representatives(
                entry.review, others, vectors, n=n, random_state=seed
            )
        else:
            users = selection.representatives(
                entry.review, others, vectors, n=n, seed=seed, n_init=self.preset.kmeans_n_init
            )
        return ComparisonSet(
            item=entry.item, user_review=entry.review, users=users, reviewers=len(others)
        )

    def comparisons(
        self,
        target: Target,
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        refresh: bool = False,
    ) -> list[ComparisonSet]:
        """Representative comparison users for each comparison item (``comparison_items``).

        Raises Cancelled when ``cancel`` is set between items."""
        run = _Run(cancel, refresh)
        return _drive(self._comparisons(target, run), progress)

    def measured(self, comparisons: list[ComparisonSet]) -> list[MeasuredDifferences]:
        """Measured (not generated) differences per comparison item."""
        return [measured_differences(c) for c in comparisons]

    def _measure(self, comparisons: list[ComparisonSet]) -> Step[list[MeasuredDifferences]]:
        """The measured differences, announced the moment the comparison sets exist: they
        need no model, so a front end can show them before the first LLM call."""
        measured = self.measured(comparisons)
        n = len(comparisons)
        yield ProgressEvent("measure", n, n, detail="counted from the texts", value=measured)
        return measured

    def _description_option(self) -> dict[str, int]:
        """The description cap, in cache keys only when set (default keys never change)."""
        cap = self.config.max_description_chars
        return {} if cap is None else {"max_description_chars": cap}

    def _analysis_params(self) -> SamplingParams:
        params = self.config.analysis
        return params if params.seed is not None else replace(params, seed=self.config.seed)

    def _analysis_key(
        self, user_id: str, item_key: str, prompt_version: str, params: dict[str, Any]
    ) -> ArtifactKey:
        """The key of a result the analyst writes: its model, sampling and review cap are
        part of every such key."""
        return ArtifactKey(
            user_id=user_id,
            item_key=item_key,
            model_id=self.analyst.model_id,
            prompt_version=prompt_version,
            params={
                **params,
                "sampling": asdict(self._analysis_params()),
                "max_review_chars": self.config.max_review_chars,
                **self._description_option(),
            },
        )

    def _differences(self, comparisons: list[ComparisonSet], run: _Run) -> Step[list[Differences]]:
        total = len(comparisons)
        yield ProgressEvent("differences", 0, total)
        found: list[tuple[Differences, list[str]] | None] = [None] * total
        todo: list[tuple[int, ArtifactKey]] = []
        done = 0
        for i, comparison in enumerate(comparisons):
            run.check()
            key = self._analysis_key(
                comparison.user_review.user_id,
                comparison.item.id,
                prompts.differences_version(self.preset),
                {"comparison": digest(comparison)},
            )
            answer = artifacts.lookup(self.store, artifacts.DIFFERENCES, key, refresh=run.refresh)
            if answer is None:
                todo.append((i, key))
                continue
            found[i] = answer
            done += 1
            yield _arrived(comparison, answer[0], done, total, cached=True)

        # The calls run side by side up to the backend's concurrency; each result is stored
        # as soon as it is complete, so a cancel or a failure keeps every finished one.
        limit = self.analyst.concurrency if todo else 1
        jobs = [comparisons[i] for i, _ in todo]
        for j, extraction in concurrent.bounded(self._extract_differences, jobs, limit, run.cancel):
            i, key = todo[j]
            run.calls += extraction.calls
            answer = (extraction.differences, extraction.notes)
            artifacts.keep(self.store, artifacts.DIFFERENCES, key, answer)
            found[i] = answer
            done += 1
            run.check()
            yield _arrived(comparisons[i], answer[0], done, total, cached=False)
        answers = [answer for answer in found if answer is not None]  # all of them by now
        for _, notes in answers:
            run.notes.extend(notes)
        return [value for value, _ in answers]

    def _extract_differences(
        self, comparison: ComparisonSet, cancel: CancelToken
    ) -> differences_step.Extraction:
        """One differences call (and its retry); it may run in a worker thread."""
        return differences_step.extract(
            self.analyst,
            comparison,
            self._analysis_params(),
            max_review_chars=self.config.max_review_chars,
            cancel=cancel,
            preset=self.preset,
        )

    def differences(
        self,
        target: Target,
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        refresh: bool = False,
    ) -> list[Differences]:
        """The LLM's account of how the user differs, one entry per comparison item."""
        run = _Run(cancel, refresh)
        comparisons = _drive(self._comparisons(target, run), progress)
        _drive(self._measure(comparisons), progress)
        return _drive(self._differences(comparisons, run), progress)

    def _profile(
        self,
        target: Target,
        kind: str,
        retrieved: list[Retrieved],
        comparisons: list[ComparisonSet],
        found: list[Differences],
        run: _Run,
    ) -> Step[Profile]:
        if kind not in prompts.PROFILE_VERSIONS:
            raise EngineError(f"Unknown profile kind {kind!r}: use 'dpl' or 'profile'.")
        run.check()
        yield ProgressEvent("profile", 0, 1, detail=kind)
        pairs, measured, options = self._profile_inputs(kind, comparisons, found)
        key = self._analysis_key(
            target.user_id,
            ",".join(r.entry.item.id for r in retrieved),
            prompts.profile_version(kind, self.preset),
            {"past": digest([r.entry for r in retrieved]), "differences": digest(pairs), **options},
        )
        write = self._write_profile(kind, retrieved, pairs, measured, run)
        (value, notes), cached = yield from artifacts.cached(
            self.store, artifacts.PROFILE, key, write, refresh=run.refresh
        )
        run.notes.extend(notes)
        yield ProgressEvent("profile", 1, 1, cached=cached, detail=kind)
        return value

    def _write_profile(
        self,
        kind: str,
        retrieved: list[Retrieved],
        pairs: list[tuple[Any, Differences]],
        measured: list[tuple[str, str]],
        run: _Run,
    ) -> Step[tuple[Profile, list[str]]]:
        """One profile call, each delta announced as it is written so a front end can show
        the profile grow."""
        run.calls += 1
        deltas = profile_step.write(
            self.analyst,
            kind,
            retrieved,
            pairs,
            self._analysis_params(),
            max_review_chars=self.config.max_review_chars,
            cancel=run.cancel,
            preset=self.preset,
            measured=measured,
        )
        while True:
            try:
                delta = next(deltas)
            except StopIteration as written:
                return written.value
            yield ProgressEvent("profile", 0, 1, detail=kind, value=TokenEvent(delta))

    def _profile_inputs(
        self, kind: str, comparisons: list[ComparisonSet], found: list[Differences]
    ) -> tuple[list[tuple[Any, Differences]], list[tuple[str, str]], dict[str, Any]]:
        """The differences and measured accounts the profile prompt gets, and the options
        that chose them (part of the cache key only when set, so default keys never change)."""
        if kind != "dpl":
            return [], [], {}
        cfg = self.config
        kept: list[Differences | None] = list(found)
        options: dict[str, Any] = {}
        if cfg.drop_uninformative:
            kept = informative.informative_only(found, comparisons)
            options["drop_uninformative"] = informative.RULES_VERSION
        pairs = [(c.item, d) for c, d in zip(comparisons, kept, strict=True) if d is not None]
        measured: list[tuple[str, str]] = []
        if cfg.measured_in_profile:
            pooled, per_item = describe.accounts(self.measured(comparisons))
            if pooled is not None and len(per_item) > 1:
                measured.append(("all compared items", pooled.text))
            measured += [(c.item.title, a.text) for c, a in zip(comparisons, per_item, strict=True)]
            options["measured_in_profile"] = describe.VERSION
        return pairs, measured, options

    def profile(
        self,
        target: Target,
        kind: str = "dpl",
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        refresh: bool = False,
    ) -> Profile:
        """The ``dpl`` (difference-aware) or ``profile`` (past reviews only) profile."""
        run = _Run(cancel, refresh)
        retrieved = _drive(self._retrieve(target), progress)
        comparisons: list[ComparisonSet] = []
        found: list[Differences] = []
        if kind == "dpl":
            comparisons = _drive(self._comparisons(target, run), progress)
            _drive(self._measure(comparisons), progress)
            found = _drive(self._differences(comparisons, run), progress)
        return _drive(self._profile(target, kind, retrieved, comparisons, found, run), progress)

    # -- ahead of time ---------------------------------------------------------------
    def _prepare(self, target: Target, run: _Run, rest: bool) -> Step[Prepared]:
        retrieved = yield from self._retrieve(target)
        comparisons = yield from self._comparisons(target, run)
        found = yield from self._differences(comparisons, run)
        yield from self._profile(target, "dpl", retrieved, comparisons, found, run)
        items = len(comparisons)
        if rest:
            done = {c.item.id for c in comparisons}
            ranked, eligible = self._comparable(target, limit=len(self._history(target)))
            extra = [(r.entry, others) for r, others in ranked if r.entry.item.id not in done]
            yield ProgressEvent("compare", 0, len(extra), detail="the user's other items")
            sets = yield from self._compare_items(extra, run)
            yield from self._differences(sets, run)
            items += len(sets)
        return Prepared(target=target, items=items, llm_calls=run.calls)

    def prepare(
        self,
        target: Target,
        *,
        rest: bool = False,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> Prepared:
        """Compute and cache what a ``dpl`` generation for ``target`` needs: its comparison
        sets, their differences and the profile. With ``rest``, then the differences of the
        user's other eligible items too, most relevant to the target first: they serve any
        later target of the same user.

        Everything is read from the cache when there; a cancel keeps each finished item
        (raises Cancelled)."""
        run = _Run(cancel, False)
        return _drive(self._prepare(target, run, rest), progress)

    # -- generation ---------------------------------------------------------------
    def generation_params(self, sampling: SamplingParams | None = None) -> SamplingParams:
        params = sampling or self.config.generation
        return params if params.seed is not None else replace(params, seed=self.config.seed)

    def _prompt(
        self, target: Target, method: Method, run: _Run, params: SamplingParams, got: _Inputs
    ) -> Step[list[ChatMessage]]:
        """What ``method`` needs, gathered into ``got`` step by step (so a cancel keeps what
        was found), then the review prompt as the writer model receives it."""
        run.check()
        if method != "none":
            got.retrieved = yield from self._retrieve(target)
        if method == "dpl":
            got.comparisons = yield from self._comparisons(target, run)
            got.measured = yield from self._measure(got.comparisons)
            got.found = yield from self._differences(got.comparisons, run)
        if method in ("profile", "dpl"):
            got.profile = yield from self._profile(
                target, method, got.retrieved, got.comparisons, got.found, run
            )
        run.check()
        messages, notes = generation.build(
            self.generator,
            method,
            target,
            got.retrieved,
            got.profile,
            max_tokens=params.max_tokens,
            max_review_chars=self.config.max_review_chars,
            preset=self.preset,
        )
        run.notes.extend(notes)
        return messages

    def prompt(
        self,
        target: Target,
        method: Method = "dpl",
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        sampling: SamplingParams | None = None,
    ) -> tuple[list[ChatMessage], int]:
        """The review prompt ``run`` would send for ``target``, without generating; and the
        LLM calls it took (differences and profile, 0 when cached). Training examples are
        built with it, so what an adapter learns from is what it is served.

        Raises Cancelled when ``cancel`` is set."""
        if method not in METHODS:
            raise EngineError(f"Unknown method {method!r}: choose one of {', '.join(METHODS)}.")
        run = _Run(cancel, False)
        params = self.generation_params(sampling)
        messages = _drive(self._prompt(target, method, run, params, _Inputs()), progress)
        return messages, run.calls

    def run(
        self,
        target: Target,
        method: Method = "dpl",
        *,
        cancel: CancelToken | None = None,
        refresh: bool = False,
        sampling: SamplingParams | None = None,
    ) -> Iterator[Event]:
        """Prepare what ``method`` needs, then stream the review.

        Yields ProgressEvent for each step, TokenEvent per text delta, and one
        final ResultEvent (also when cancelled: ``result.cancelled`` is True)."""
        if method not in METHODS:
            raise EngineError(f"Unknown method {method!r}: choose one of {', '.join(METHODS)}.")
        run = _Run(cancel, refresh)
        got = _Inputs()
        params = self.generation_params(sampling)
        writer: TextGenerator | None = None
        try:
            messages = yield from self._prompt(target, method, run, params, got)
            writer = self.writer(target.user_id)
            yield ProgressEvent("generate", 0, 1, detail=writer.model_id)
            run.check()
        except Cancelled:
            yield ResultEvent(self._result(target, method, run, got, writer, cancelled=True))
            return

        run.calls += 1
        text, stats, cancelled = yield from _stream(writer, messages, params, run.cancel)
        generation_id = None
        if not cancelled:
            generation_id = self.store.add_generation(
                user_id=target.user_id,
                item_id=target.item.id,
                method=method,
                model_id=writer.model_id,
                prompt_version=prompts.method_version(method, self.preset),
                params=self._stored_params(method, params, messages),
                text=text,
                stats=asdict(stats) if stats is not None else {},
            )
            yield ProgressEvent("generate", 1, 1, detail=writer.model_id)
        result = self._result(
            target,
            method,
            run,
            got,
            writer,
            text=text,
            messages=messages,
            stats=stats,
            cancelled=cancelled,
            generation_id=generation_id,
        )
        yield ResultEvent(result)

    def _result(
        self,
        target: Target,
        method: Method,
        run: _Run,
        got: _Inputs,
        writer: TextGenerator | None,
        *,
        text: str = "",
        messages: list[dict[str, str]] | None = None,
        stats: GenerationStats | None = None,
        cancelled: bool = False,
        generation_id: int | None = None,
    ) -> GenerationResult:
        """What one ``run`` ends with; ``writer`` is None when it stopped before choosing one."""
        if writer is not None:
            model_id = writer.model_id
        else:  # never load a model only to name it
            model_id = self._generator.model_id if self._generator is not None else ""
        return GenerationResult(
            target=target,
            method=method,
            text=text,
            model_id=model_id,
            prompt_version=prompts.method_version(method, self.preset),
            messages=tuple(messages or ()),
            stats=stats,
            retrieved=tuple(got.retrieved),
            comparisons=tuple(got.comparisons),
            measured=tuple(got.measured),
            differences=tuple(got.found),
            profile=got.profile,
            notes=tuple(run.notes),
            llm_calls=run.calls,
            cancelled=cancelled,
            generation_id=generation_id,
        )

    def _stored_params(
        self, method: Method, params: SamplingParams, messages: list[dict[str, str]]
    ) -> dict[str, Any]:
        cfg = self.config
        stored: dict[str, Any] = {
            "sampling": asdict(params),
            "k": cfg.k,
            "preset": cfg.preset,
            "max_review_chars": cfg.max_review_chars,
            "prompt": digest(messages),
            **self._description_option(),
        }
        if method in ("profile", "dpl"):
            stored["analysis"] = asdict(self._analysis_params())
            if self.has_analyst:
                stored["analyst"] = self.analyst.model_id
        if method == "dpl":
            stored.update(m=cfg.m, n=cfg.n, seed=cfg.seed, embedder=self.embedder_id)
            if cfg.measured_in_profile:
                stored["measured_in_profile"] = describe.VERSION
            if cfg.drop_uninformative:
                stored["drop_uninformative"] = informative.RULES_VERSION
        return stored

    def generate(self, target: Target, method: Method = "dpl", **kw: Any) -> GenerationResult:
        """``run`` to completion, returning the result."""
        final: GenerationResult | None = None
        for event in self.run(target, method, **kw):
            if isinstance(event, ResultEvent):
                final = event.result
        assert final is not None
        return final
