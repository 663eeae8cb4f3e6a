"""The paper's evaluation: every method, user and seed generated, scored and kept.

For each selected user of a split, each seed and each method, the engine writes
the user's held-out review (test or validation target) while every user's
targets stay hidden from it; the text is scored against the real review and the
row is stored at once. Re-running the same configuration skips every finished
(method, seed, user), so an interrupted run resumes and a finished one is only
re-reported. Scores are aggregated per seed (mean ROUGE/METEOR/judge over users,
corpus BLEU) and then as mean ± std over seeds, the shape of the paper's table.
Beside it, ``dpl`` is compared with each other method user by user (paired over
the same targets), since the spread over seeds says nothing about whether one
method beats another on the same people.
"""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models import Embedder, TextGenerator
from user_store import UserStore
from user_store.eval_store import EvalStore, ResultRow, StoredRun

from . import metrics, prompts
from .engine import Engine
from .errors import EngineError
from .split import Split, SplitName
from .types import METHODS, Cancelled, CancelToken, EngineConfig, Method

MetricName = str
METRICS: tuple[MetricName, ...] = ("rouge1", "rougeL", "meteor", "bleu", "judge")
METRIC_LABELS = {
    "rouge1": "ROUGE-1",
    "rougeL": "ROUGE-L",
    "meteor": "METEOR",
    "bleu": "BLEU",
    "judge": "Judge",
}
PAIRED_METRICS: tuple[MetricName, ...] = ("rouge1", "rougeL", "meteor", "judge")
"""Per-review metrics, so they can be compared user by user (corpus BLEU cannot)."""
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


# -- the report -------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSummary:
    mean: float | None
    std: float | None
    """Sample standard deviation over seeds; None with a single seed."""
    per_seed: tuple[float | None, ...]


@dataclass(frozen=True)
class MethodRow:
    method: str
    metrics: dict[str, MetricSummary]
    judged: int = 0
    judge_failures: int = 0
    """Judge replies that held no valid 0-10 score (left out of the mean, counted here)."""
    llm_calls: float = 0.0
    comparison_items: float = 0.0
    seconds: float = 0.0
    """Mean per generation."""


@dataclass(frozen=True)
class PairedDiff:
    """``method`` minus ``baseline`` on one metric over the same users.

    Each user's score is their mean over the seeds; ``better``/``worse`` count the users
    for whom ``method`` scored higher/lower."""

    method: str
    baseline: str
    metric: str
    users: int
    mean_diff: float
    better: int
    worse: int
    p_value: float | None
    """Two-sided Wilcoxon signed-rank test; None when every difference is zero."""


@dataclass(frozen=True)
class EvalReport:
    run_id: int
    status: str
    split: str
    split_id: int
    split_params: dict[str, Any]
    model_id: str
    embedder_id: str
    engine: dict[str, Any]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    users: tuple[str, ...]
    """Users with a result for every method and seed: the ones the table averages over."""
    incomplete_users: int
    rows: tuple[MethodRow, ...]
    elapsed_s: float
    meteor_note: str
    judge_model: str | None
    paired: tuple[PairedDiff, ...] = ()
    """``dpl`` (else the last method) against each other method, per paired metric."""


def _summary(values: Sequence[float | None]) -> MetricSummary:
    known = [v for v in values if v is not None]
    if not known or len(known) != len(values):
        return MetricSummary(None, None, tuple(values))
    std = statistics.stdev(known) if len(known) > 1 else None
    return MetricSummary(statistics.fmean(known), std, tuple(values))


def _wilcoxon_p(diffs: Sequence[float]) -> float | None:
    if not any(diffs):
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_diffs(
    cell: dict[tuple[str, int, str], ResultRow],
    methods: Sequence[str],
    seeds: Sequence[int],
    users: Sequence[str],
) -> tuple[PairedDiff, ...]:
    """The focal method (``dpl`` when present) against each other method, user by user.

    A metric is left out for a user when any of their scores is missing (METEOR without
    WordNet, an unjudged or unparsable judge reply)."""
    if len(methods) < 2 or not users:
        return ()
    focal = "dpl" if "dpl" in methods else methods[-1]
    out: list[PairedDiff] = []
    for baseline in (m for m in methods if m != focal):
        for metric in PAIRED_METRICS:
            diffs = []
            for user in users:
                mine = [getattr(cell[(focal, s, user)], metric) for s in seeds]
                theirs = [getattr(cell[(baseline, s, user)], metric) for s in seeds]
                if any(v is None for v in mine + theirs):
                    continue
                diffs.append(statistics.fmean(mine) - statistics.fmean(theirs))
            if not diffs:
                continue
            out.append(
                PairedDiff(
                    method=focal,
                    baseline=baseline,
                    metric=metric,
                    users=len(diffs),
                    mean_diff=statistics.fmean(diffs),
                    better=sum(d > 0 for d in diffs),
                    worse=sum(d < 0 for d in diffs),
                    p_value=_wilcoxon_p(diffs),
                )
            )
    return tuple(out)


def build_report(
    run: StoredRun,
    results: Sequence[ResultRow],
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    users: Sequence[str] | None = None,
    meteor_note: str = "",
) -> EvalReport:
    """Aggregate a run's stored rows over the users that have every (method, seed)."""
    methods = tuple(methods or [m for m in METHODS if any(r.method == m for r in results)])
    seeds = tuple(seeds or sorted({r.seed for r in results}))
    cell = {(r.method, r.seed, r.user_id): r for r in results}
    candidates = users if users is not None else sorted({r.user_id for r in results})
    complete = tuple(
        u for u in candidates if all((m, s, u) in cell for m in methods for s in seeds)
    )
    rows: list[MethodRow] = []
    judge_model = None
    for method in methods:
        per_seed: dict[str, list[float | None]] = {k: [] for k in METRICS}
        judged = failures = 0
        mine = [cell[(method, s, u)] for s in seeds for u in complete]
        for seed in seeds:
            pairs = [cell[(method, seed, u)] for u in complete]
            if not pairs:
                for k in METRICS:
                    per_seed[k].append(None)
                continue
            per_seed["rouge1"].append(statistics.fmean(p.rouge1 for p in pairs))
            per_seed["rougeL"].append(statistics.fmean(p.rougeL for p in pairs))
            meteors = [p.meteor for p in pairs]
            per_seed["meteor"].append(
                None if any(v is None for v in meteors) else statistics.fmean(meteors)  # type: ignore[arg-type]
            )
            per_seed["bleu"].append(
                metrics.corpus_bleu([p.text for p in pairs], [p.reference for p in pairs])
            )
            judged_pairs = [p for p in pairs if p.judge_raw is not None]
            scores = [p.judge for p in judged_pairs if p.judge is not None]
            judged += len(judged_pairs)
            failures += len(judged_pairs) - len(scores)
            per_seed["judge"].append(statistics.fmean(scores) if scores else None)
            for p in judged_pairs:
                judge_model = judge_model or json.loads(p.judge_raw or "{}").get("model")
        rows.append(
            MethodRow(
                method=method,
                metrics={k: _summary(v) for k, v in per_seed.items()},
                judged=judged,
                judge_failures=failures,
                llm_calls=statistics.fmean(r.llm_calls for r in mine) if mine else 0.0,
                comparison_items=(
                    statistics.fmean(r.comparison_items for r in mine) if mine else 0.0
                ),
                seconds=statistics.fmean(r.seconds for r in mine) if mine else 0.0,
            )
        )
    config = run.config
    return EvalReport(
        run_id=run.id,
        status=run.status,
        split=config["split"],
        split_id=run.split_id,
        split_params=config["split_params"],
        model_id=config["model_id"],
        embedder_id=config["embedder_id"],
        engine=config["engine"],
        methods=methods,
        seeds=seeds,
        users=complete,
        incomplete_users=len(candidates) - len(complete),
        rows=tuple(rows),
        elapsed_s=run.elapsed_s,
        meteor_note=meteor_note,
        judge_model=judge_model,
        paired=paired_diffs(cell, methods, seeds, complete),
    )


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
    ) -> None:
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
        self._wordnet_status = metrics.wordnet_status()
        self._wordnet: Any = None

    # models load on first use
    def _load(self, attr: str) -> Any:
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
        for part in ("generation", "analysis"):
            engine[part].pop("seed", None)
        return {
            "split_id": self.split.split_id,
            "split": self.config.split,
            "split_params": asdict(self.split.params),
            "model_id": self.generator.model_id,
            "embedder_id": self.embedder_id,
            "engine": engine,
            "prompts": {m: prompts.method_version(m) for m in METHODS},
        }

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
        )

    def execute(
        self,
        plan: Plan | None = None,
        *,
        on_event: Callable[[CellEvent], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> EvalReport:
        """Run every unfinished cell of the plan; Ctrl-C (or ``cancel``) keeps finished ones.

        Raises KeyboardInterrupt after recording the run as stopped."""
        plan = plan or self.plan()
        emit = on_event or (lambda _e: None)
        for user, method, seed in plan.cells:
            if (method, seed, user) in plan.done:
                emit(CellEvent("resumed", method, seed, user))
        if self._wordnet_status.available:
            self._wordnet = metrics.load_wordnet(self._wordnet_status)
        hidden = self.split.hidden_reviews(self.config.split)
        engines: dict[int, Engine] = {}
        started = time.perf_counter()
        status = "running"
        try:
            for user, method, seed in plan.cells:
                if (method, seed, user) in plan.done:
                    continue
                if cancel is not None and cancel.cancelled:
                    status = "stopped"
                    break
                engine = engines.get(seed) or engines.setdefault(seed, self._engine(seed, hidden))
                emit(CellEvent("start", method, seed, user))
                seconds = self._cell(plan.run.id, engine, user, method, seed, cancel)
                if seconds is None:
                    status = "stopped"
                    break
                emit(CellEvent("done", method, seed, user, seconds))
            else:
                status = "done"
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

    def _cell(
        self,
        run_id: int,
        engine: Engine,
        user_id: str,
        method: Method,
        seed: int,
        cancel: CancelToken | None,
    ) -> float | None:
        user = self.split.user(user_id)
        item_id = self.split.target_item(user, self.config.split)
        real = self.store.review(user_id, item_id)
        if real is None:
            raise EngineError(
                f"The split's target review of {item_id!r} by {user_id!r} is no longer in the "
                "store. Recompute the split with `dpl split`."
            )
        target = engine.target(user_id, item_id, rating=real.rating, title=real.title)
        t0 = time.perf_counter()
        result = engine.generate(target, method, cancel=cancel)
        seconds = time.perf_counter() - t0
        if result.cancelled:
            return None
        text = result.text.strip()
        scores = metrics.score_pair(text, real.text, wordnet=self._wordnet)
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
            )
        )
        return seconds

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
        return build_report(
            self.evals.run(plan.run.id),
            self.evals.results(plan.run.id),
            methods=self.config.methods,
            seeds=self.config.seeds,
            users=plan.users,
            meteor_note=self.meteor_note,
        )


def stored_report(store: UserStore, run_id: int) -> EvalReport:
    """A stored run's table, over every method, seed and user it holds."""
    evals = EvalStore(store)
    run = evals.run(run_id)
    return build_report(run, evals.results(run_id), meteor_note=metrics.wordnet_status().message)


# -- writers --------------------------------------------------------------------------------
def format_value(metric: str, summary: MetricSummary) -> str:
    if summary.mean is None:
        return "n/a"
    digits = 2 if metric == "bleu" else 4
    text = f"{summary.mean:.{digits}f}"
    if summary.std is not None:
        text += f" ± {summary.std:.{digits}f}"
    return text


def shown_metrics(report: EvalReport) -> list[str]:
    return [m for m in METRICS if m != "judge" or any(r.judged for r in report.rows)]


def header_lines(report: EvalReport) -> list[str]:
    p = report.split_params
    lines = [
        f"Run {report.run_id} ({report.status}): {len(report.users)} users, "
        f"{report.split} targets, seeds {', '.join(map(str, report.seeds))}",
        f"Model: {report.model_id}; embedder: {report.embedder_id}",
        f"Split {report.split_id}: text >= {p['min_chars']} chars, users with "
        f"{p['min_user_reviews']}-{p['max_user_reviews']} reviews, items with >= "
        f"{p['min_item_reviewers']} reviewers",
        f"Engine: k={report.engine['k']}, m={report.engine['m']}, n={report.engine['n']}, "
        f"max_tokens={report.engine['generation']['max_tokens']} (generation) / "
        f"{report.engine['analysis']['max_tokens']} (analysis), "
        f"temperature {report.engine['generation']['temperature']}, reviews in prompts cut at "
        f"{report.engine['max_review_chars']} chars",
        f"Elapsed: {report.elapsed_s:.0f} s",
    ]
    if report.incomplete_users:
        lines.append(
            f"{report.incomplete_users} selected users lack some results and are left out "
            "(re-run the same command to finish them)."
        )
    if any(r.metrics["meteor"].mean is None for r in report.rows) and report.meteor_note:
        lines.append(report.meteor_note)
    for r in report.rows:
        if r.judged:
            lines.append(
                f"Judge ({report.judge_model}) on {r.method}: {r.judged} replies, "
                f"{r.judge_failures} unparsable (left out of the mean)."
            )
    return lines


def to_markdown(report: EvalReport) -> str:
    cols = shown_metrics(report)
    out = io.StringIO()
    for line in header_lines(report):
        out.write(f"- {line}\n")
    out.write("\n| Method | " + " | ".join(METRIC_LABELS[c] for c in cols))
    out.write(" | LLM calls | comparison items | s / generation |\n")
    out.write("|---|" + "---:|" * (len(cols) + 3) + "\n")
    for row in report.rows:
        cells = [format_value(c, row.metrics[c]) for c in cols]
        out.write(
            f"| {row.method} | "
            + " | ".join(cells)
            + f" | {row.llm_calls:.1f} | {row.comparison_items:.1f} | {row.seconds:.1f} |\n"
        )
    paired = paired_table(report)
    if paired:
        header, rows = paired
        out.write(f"\n{paired_caption(report)}\n\n")
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|---|" + "---:|" * (len(header) - 1) + "\n")
        for cells in rows:
            out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def format_paired(d: PairedDiff) -> str:
    """``+0.0123 (p 0.04; 25↑ 14↓)``: mean difference, p-value, users better and worse."""
    p = "p n/a" if d.p_value is None else f"p {d.p_value:.2g}"
    return f"{d.mean_diff:+.4f} ({p}; {d.better}↑ {d.worse}↓)"


def paired_caption(report: EvalReport) -> str:
    focal = report.paired[0].method
    return (
        f"Paired by user ({focal} minus each method; each user's mean over seeds): mean "
        "difference, two-sided Wilcoxon signed-rank p, users better ↑ and worse ↓."
    )


def paired_table(report: EvalReport) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of the paired comparison, or None when there is none."""
    if not report.paired:
        return None
    metrics_shown = [m for m in PAIRED_METRICS if any(d.metric == m for d in report.paired)]
    focal = report.paired[0].method
    header = [f"{focal} vs"] + [METRIC_LABELS[m] for m in metrics_shown]
    rows = []
    for baseline in dict.fromkeys(d.baseline for d in report.paired):
        by_metric = {d.metric: d for d in report.paired if d.baseline == baseline}
        rows.append(
            [baseline]
            + [format_paired(by_metric[m]) if m in by_metric else "n/a" for m in metrics_shown]
        )
    return header, rows


def to_csv(report: EvalReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["run", "split", "method", "metric", "mean", "std", "seeds", "users", "per_seed", "model"]
    )
    for row in report.rows:
        for metric in METRICS:
            s = row.metrics[metric]
            writer.writerow(
                [
                    report.run_id,
                    report.split,
                    row.method,
                    metric,
                    "" if s.mean is None else f"{s.mean:.6f}",
                    "" if s.std is None else f"{s.std:.6f}",
                    len(report.seeds),
                    len(report.users),
                    json.dumps(s.per_seed),
                    report.model_id,
                ]
            )
    return out.getvalue()


def to_json(report: EvalReport) -> str:
    return json.dumps(asdict(report), indent=2, ensure_ascii=False)


def write_outputs(report: EvalReport, folder: Path) -> list[Path]:
    """``eval-run<N>.md``, ``.csv`` and ``.json`` in ``folder``; returns the paths."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EngineError(f"Cannot create the output folder {str(folder)!r}: {err}") from err
    paths = []
    stem = f"eval-run{report.run_id}"
    for suffix, text in (
        (".md", to_markdown(report)),
        (".csv", to_csv(report)),
        (".json", to_json(report)),
    ):
        path = folder / (stem + suffix)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
