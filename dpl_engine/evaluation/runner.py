"""The paper's evaluation: every method, user and seed generated, scored and kept.

For each selected user of a split, each seed and each method, the engine writes
the user's held-out review (test or validation target) while every user's
targets stay hidden from it; the text is scored against the real review and the
row is stored at once. Re-running the same configuration skips every finished
(method, seed, user), so an interrupted run resumes and a finished one is only
re-reported. The table built from the stored rows, and its writers, are in
``report.py``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from models import Embedder, TextGenerator
from user_store import Review, UserStore
from user_store.eval_store import EvalStore, ResultRow, StoredRun

from ..engine import Engine, Prepared
from ..errors import EngineError
from ..method import concurrent, informative, presets, prompts, selection
from ..method.concurrent import LinkedCancel
from ..types import METHODS, Cancelled, CancelToken, EngineConfig, Method, Target
from . import metrics
from .report import EvalReport, build_report
from .split import Split, SplitName, params_dict

USER_ORDER_SEED = 0
"""Users are taken in one fixed shuffled order, so ``--users 20`` extends ``--users 10``."""


@dataclass(frozen=True)
class EvalConfig:
    methods: tuple[Method, ...] = METHODS
    seeds: tuple[int, ...] = (42,)
    users: int | None = None
    """How many of the split's users (None: all), taken in a fixed shuffled order."""
    split: SplitName = "test"
    engine: EngineConfig = field(default_factory=EngineConfig)
    """k, m, n, sampling; its ``seed`` is replaced by each of ``seeds``."""

    def check(self) -> None:
        if not self.methods:
            raise EngineError("Give at least one method: --methods none,rag,profile,dpl.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise EngineError(f"Unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}.")
        if not self.seeds:
            raise EngineError("Give at least one --seed.")
        if self.users is not None and self.users < 1:
            raise EngineError(f"--users must be at least 1 (got {self.users}).")
        if self.split not in ("val", "test"):
            raise EngineError(f"--split must be 'val' or 'test' (got {self.split!r}).")


# -- progress -------------------------------------------------------------------------
@dataclass(frozen=True)
class CellEvent:
    """One (method, seed, user) of the plan: started, finished, or found already done."""

    kind: str
    """'resumed' (finished in an earlier run), 'start', 'done'."""
    method: Method
    seed: int
    user_id: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Plan:
    run: StoredRun
    split: Split
    users: tuple[str, ...]
    cells: tuple[tuple[str, Method, int], ...]
    """(user, method, seed) in the order they run."""
    done: frozenset[tuple[str, int, str]]
    """(method, seed, user) already finished."""

    def total(self, method: Method) -> int:
        return sum(1 for _, m, _ in self.cells if m == method)

    def finished(self, method: Method) -> int:
        return sum(1 for u, m, s in self.cells if m == method and (m, s, u) in self.done)


# -- the runner ---------------------------------------------------------------------------
Factory = Callable[[], Any]


class Evaluation:
    """Generate, score and store every (method, seed, user) of ``config`` on ``split``."""

    def __init__(
        self,
        store: UserStore,
        split: Split,
        generator: TextGenerator | Factory,
        embedder: Embedder | Factory,
        config: EvalConfig,
        *,
        embedder_id: str | None = None,
        judge: TextGenerator | Factory | None = None,
        analyst: TextGenerator | Factory | None = None,
        personal: Callable[[str], TextGenerator | None] | None = None,
    ) -> None:
        """``analyst``: the model that reads users when it is not ``generator`` (see
        ``Engine``); it joins the run's identity. ``personal``: each user's own writer, if
        any (``Engine``); the per-user adapters of the selected users join it too."""
        config.check()
        if split.split_id is None:
            raise EngineError("Store the split first (split.prepare) so results can refer to it.")
        if not split.users:
            raise EngineError(
                f"The split ({split.params.describe()}) has no users. Relax its thresholds "
                "(`dpl split` suggests some)."
            )
        self.store = store
        self.evals = EvalStore(store)
        self.split = split
        self.config = config
        self._generator = generator
        self._embedder = embedder
        self._embedder_id = embedder_id
        self._judge = judge
        self._analyst = analyst
        self._personal = personal
        self._preset = presets.preset(config.engine.preset)
        self._wordnet_status = metrics.wordnet_status()
        self._wordnet: Any = None
        self._load_lock = threading.RLock()

    # models load on first use, once, whichever thread asks first
    def _load(self, attr: str) -> Any:
        with self._load_lock:
            value = getattr(self, attr)
            if value is not None and not isinstance(value, (TextGenerator, Embedder)):
                value = value()
                setattr(self, attr, value)
            return value

    @property
    def generator(self) -> TextGenerator:
        return self._load("_generator")

    @property
    def embedder(self) -> Embedder:
        return self._load("_embedder")

    @property
    def analyst(self) -> TextGenerator | None:
        return self._load("_analyst") if self._analyst is not None else None

    @property
    def embedder_id(self) -> str:
        if self._embedder_id is None:
            self._embedder_id = self.embedder.model_id
        return self._embedder_id

    @property
    def meteor_note(self) -> str:
        return self._wordnet_status.message

    def selected_users(self) -> tuple[str, ...]:
        ids = sorted(u.user_id for u in self.split.users)
        random.Random(USER_ORDER_SEED).shuffle(ids)
        return tuple(ids[: self.config.users] if self.config.users else ids)

    def run_config(self) -> dict[str, Any]:
        """What identifies the run: same values, same run (and its finished cells)."""
        engine = asdict(replace(self.config.engine, seed=0))
        engine.pop("seed")
        if engine.get("max_description_chars") is None:
            engine.pop("max_description_chars", None)  # runs from before the option match
        for part in ("generation", "analysis"):
            engine[part].pop("seed", None)
        config = {
            "split_id": self.split.split_id,
            "split": self.config.split,
            "split_params": params_dict(self.split.params),
            "model_id": self.generator.model_id,
            "embedder_id": self.embedder_id,
            "engine": engine,
            "prompts": {m: prompts.method_version(m, self._preset) for m in METHODS},
        }
        if self.analyst is not None:  # only when set, so earlier runs keep their identity
            config["analyst_id"] = self.analyst.model_id
        personal = self.personal_writers()
        if personal:  # the same: a run without per-user adapters keeps its identity
            config["personal"] = personal
        if self._preset.selection == "paper":
            # Paper runs made before the published row order are another run, not one to
            # extend; dpl's runs keep their identity.
            config["selection"] = selection.PAPER_RULE
        return config

    def personal_writers(self) -> dict[str, str]:
        """The selected users that have a writer of their own, and its model id."""
        if self._personal is None:
            return {}
        found = {user: self._personal(user) for user in self.selected_users()}
        return {user: gen.model_id for user, gen in sorted(found.items()) if gen is not None}

    def plan(self) -> Plan:
        assert self.split.split_id is not None
        run, _ = self.evals.find_or_create_run(self.split.split_id, self.run_config())
        users = self.selected_users()
        cells = tuple(
            (u, m, s) for u in users for s in self.config.seeds for m in self.config.methods
        )
        return Plan(run, self.split, users, cells, frozenset(self.evals.done_cells(run.id)))

    def _engine(self, seed: int, hidden: frozenset[tuple[str, str]]) -> Engine:
        cfg = replace(self.config.engine, seed=seed)
        return Engine(
            self.store,
            self.generator,
            lambda: self.embedder,
            cfg,
            exclude_reviews=hidden,
            embedder_id=self.embedder_id,
            analyst=self.analyst,
            personal=self._personal,
        )

    def execute(
        self,
        plan: Plan | None = None,
        *,
        on_event: Callable[[CellEvent], None] | None = None,
        cancel: CancelToken | None = None,
        concurrency: int = 1,
    ) -> EvalReport:
        """Run every unfinished cell of the plan; Ctrl-C (or ``cancel``) keeps finished ones.

        ``concurrency`` users run at once, each user's cells in plan order; ``on_event``
        is then called from several threads. A cell is stored only once it is complete,
        so a stop or a crash never leaves half a generation behind.
        Raises KeyboardInterrupt after recording the run as stopped."""
        plan = plan or self.plan()
        emit = on_event or (lambda _e: None)
        for user, method, seed in plan.cells:
            if (method, seed, user) in plan.done:
                emit(CellEvent("resumed", method, seed, user))
        if self._wordnet_status.available:
            self._wordnet = metrics.load_wordnet(self._wordnet_status)
            self._meteor_missing(plan)
        hidden = self.split.hidden_reviews(self.config.split)
        engines = {seed: self._engine(seed, hidden) for seed in self.config.seeds}
        todo: dict[str, list[tuple[Method, int]]] = {}
        for user, method, seed in plan.cells:
            if (method, seed, user) not in plan.done:
                todo.setdefault(user, []).append((method, seed))
        stop = LinkedCancel(cancel)

        def run_user(user: str, token: CancelToken) -> bool:
            """The user's cells in order; False when stopped before the last one."""
            for method, seed in todo[user]:
                if token.cancelled:
                    return False
                emit(CellEvent("start", method, seed, user))
                seconds = self._cell(plan.run.id, engines[seed], user, method, seed, token)
                if seconds is None:
                    return False
                emit(CellEvent("done", method, seed, user, seconds))
            return True

        started = time.perf_counter()
        status = "running"
        try:
            finished = True
            try:
                for _, complete in concurrent.bounded(run_user, list(todo), concurrency, stop):
                    finished = finished and complete
            except KeyboardInterrupt:
                stop.cancel()
                raise
            except Cancelled:
                finished = False
            status = "done" if finished and not stop.cancelled else "stopped"
            if self._judge is not None:
                self._judge_missing(plan, cancel)
        except (KeyboardInterrupt, Cancelled):
            self.evals.update_run(
                plan.run.id, status="stopped", add_elapsed_s=time.perf_counter() - started
            )
            raise
        self.evals.update_run(
            plan.run.id, status=status, add_elapsed_s=time.perf_counter() - started
        )
        return self.report(plan)

    def _target(self, engine: Engine, user_id: str) -> tuple[Target, Review]:
        """The user's target under the split, and the real review it holds out."""
        user = self.split.user(user_id)
        item_id = self.split.target_item(user, self.config.split)
        real = self.store.review(user_id, item_id)
        if real is None:
            raise EngineError(
                f"The split's target review of {item_id!r} by {user_id!r} is no longer in the "
                "store. Recompute the split with `dpl split`."
            )
        return engine.target(user_id, item_id, rating=real.rating, title=real.title), real

    def prepare(
        self,
        users: Sequence[str],
        *,
        on_done: Callable[[str, int, Prepared], None] | None = None,
        cancel: CancelToken | None = None,
        concurrency: int = 1,
    ) -> None:
        """Cache what the ``dpl`` cells of ``users`` need (comparison sets, differences,
        profiles), for every seed, under exactly the keys ``execute`` reads: a run after it
        makes one LLM call per cell. ``on_done(user, seed, prepared)`` follows each target.

        Ctrl-C (or ``cancel``) keeps every finished item."""
        hidden = self.split.hidden_reviews(self.config.split)
        engines = {seed: self._engine(seed, hidden) for seed in self.config.seeds}
        stop = LinkedCancel(cancel)

        def run_user(user: str, token: CancelToken) -> None:
            for seed, engine in engines.items():
                if token.cancelled:
                    raise Cancelled()
                target, _ = self._target(engine, user)
                prepared = engine.prepare(target, cancel=token)
                if on_done is not None:
                    on_done(user, seed, prepared)

        try:
            for _ in concurrent.bounded(run_user, list(users), concurrency, stop):
                pass
        except KeyboardInterrupt:
            stop.cancel()
            raise

    def _cell(
        self,
        run_id: int,
        engine: Engine,
        user_id: str,
        method: Method,
        seed: int,
        cancel: CancelToken | None,
    ) -> float | None:
        target, real = self._target(engine, user_id)
        item_id = target.item.id
        t0 = time.perf_counter()
        result = engine.generate(target, method, cancel=cancel)
        seconds = time.perf_counter() - t0
        if result.cancelled:
            return None
        text = result.text.strip()
        scores = metrics.score_pair(text, real.text, wordnet=self._wordnet)
        flagged = informative.share(result.differences, result.comparisons)
        stats = result.stats
        self.evals.add_result(
            ResultRow(
                run_id=run_id,
                method=method,
                seed=seed,
                user_id=user_id,
                item_id=item_id,
                generation_id=result.generation_id,
                text=text,
                reference=real.text,
                rouge1=scores.rouge1,
                rougeL=scores.rougeL,
                meteor=scores.meteor,
                judge=None,
                judge_raw=None,
                llm_calls=result.llm_calls,
                comparison_items=len(result.comparisons),
                prompt_tokens=stats.prompt_tokens if stats else 0,
                completion_tokens=stats.completion_tokens if stats else 0,
                seconds=seconds,
                notes=list(result.notes),
                created_at="",
                differences=flagged.total,
                uninformative=flagged.flagged,
            )
        )
        return seconds

    def _meteor_missing(self, plan: Plan) -> None:
        """Score METEOR for the run's results stored while WordNet was not installed."""
        for row in self.evals.results(plan.run.id):
            if row.meteor is None:
                value = metrics.meteor(row.text, row.reference, wordnet=self._wordnet)
                if value is not None:
                    self.evals.set_meteor(plan.run.id, row.method, row.seed, row.user_id, value)

    def _judge_missing(self, plan: Plan, cancel: CancelToken | None) -> None:
        judge = self._load("_judge")
        wanted = {(m, s, u) for u, m, s in plan.cells}
        for row in self.evals.results(plan.run.id):
            if (row.method, row.seed, row.user_id) not in wanted or row.judge_raw is not None:
                continue
            if cancel is not None and cancel.cancelled:
                return
            item = self.store.item(row.item_id)
            verdict = metrics.judge(judge, item.title, row.reference, row.text, seed=row.seed)
            raw = json.dumps({"model": judge.model_id, "reply": verdict.raw}, ensure_ascii=False)
            self.evals.set_judge(plan.run.id, row.method, row.seed, row.user_id, verdict.score, raw)

    def report(self, plan: Plan) -> EvalReport:
        if self._wordnet is None:
            self._wordnet = metrics.load_wordnet(self._wordnet_status)
        return build_report(
            self.evals.run(plan.run.id),
            self.evals.results(plan.run.id),
            methods=self.config.methods,
            seeds=self.config.seeds,
            users=plan.users,
            meteor_note=self.meteor_note,
            wordnet=self._wordnet,
        )
