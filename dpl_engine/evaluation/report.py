"""The evaluation's table, in the paper's shape, and its writers.

Scores are aggregated per seed (mean ROUGE/METEOR/judge over users, corpus BLEU)
and then as mean ± std over seeds. A second table scores the same texts as the
published evaluation script does (``metrics.paper_scores``), the only scores that
compare with the paper's. Beside that, ``dpl`` is compared with each
other method user by user (paired over the same targets), since the spread over
seeds says nothing about whether one method beats another on the same people.

Kept apart from the runner (``evaluation.py``) so a stored run can be re-reported
without models, and so the table's arithmetic can be read and tested on its own.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from user_store import UserStore
from user_store.eval_store import EvalStore, ResultRow, StoredRun

from ..errors import EngineError
from ..types import METHODS
from . import metrics

MetricName = str
PAPER_METRICS: tuple[MetricName, ...] = ("paper_rouge1", "paper_rougeL", "paper_meteor", "bleu")
"""The second table's columns: scored as the published evaluation script scores them
(its BLEU is the same corpus BLEU as the first table's)."""
METRICS: tuple[MetricName, ...] = (
    "rouge1",
    "rougeL",
    "meteor",
    "bleu",
    "judge",
    "paper_rouge1",
    "paper_rougeL",
    "paper_meteor",
)
METRIC_LABELS = {
    "rouge1": "ROUGE-1",
    "rougeL": "ROUGE-L",
    "meteor": "METEOR",
    "bleu": "BLEU",
    "judge": "Judge",
    "paper_rouge1": "ROUGE-1",
    "paper_rougeL": "ROUGE-L",
    "paper_meteor": "METEOR",
}
PAIRED_METRICS: tuple[MetricName, ...] = ("rouge1", "rougeL", "meteor", "judge")
"""Per-review metrics, so they can be compared user by user (corpus BLEU cannot)."""


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
    differences: int = 0
    """LLM difference entries behind this method's results (0 for methods without them)."""
    uninformative: int = 0
    """How many of them the informativeness check flagged (``informative.py``)."""

    @property
    def uninformative_share(self) -> float | None:
        return self.uninformative / self.differences if self.differences else None


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
    selection: str | None = None
    """The representative-user rule a ``paper`` run was made with; None for ``dpl`` runs
    and for paper runs made before that rule followed the published row order."""
    paper_note: str = ""
    """How the second table's METEOR was tokenized ('' when it was not scored)."""


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


@dataclass(frozen=True)
class RunComparison:
    """Every method of one run against every method of another over the same targets: what
    an adapter, another model or other settings changed, user by user."""

    run_id: int
    against: int
    seeds: tuple[int, ...]
    """The seeds both runs hold; each user's score is their mean over these."""
    paired: tuple[PairedDiff, ...]


def compare_runs(
    mine: Sequence[ResultRow], theirs: Sequence[ResultRow], run_id: int, against: int
) -> RunComparison:
    """``run_id``'s methods minus ``against``'s, paired by user.

    Only users whose target is the same item in both runs count; raises EngineError when the
    runs share no seed or no such user (another split or target kind)."""
    seeds = tuple(sorted({r.seed for r in mine} & {r.seed for r in theirs}))
    if not seeds:
        raise EngineError(
            f"Runs {run_id} and {against} share no seed: compare runs made with the same --seed."
        )
    a = {(r.method, r.seed, r.user_id): r for r in mine}
    b = {(r.method, r.seed, r.user_id): r for r in theirs}
    target_a = {r.user_id: r.item_id for r in mine}
    target_b = {r.user_id: r.item_id for r in theirs}
    shared = sorted(u for u in target_a if target_b.get(u) == target_a[u])
    if not shared:
        raise EngineError(
            f"Runs {run_id} and {against} have no user with the same target: they were made "
            "on different splits or target kinds (--split), so they cannot be paired."
        )
    out: list[PairedDiff] = []
    for method in [m for m in METHODS if any(k[0] == m for k in a)]:
        for baseline in [m for m in METHODS if any(k[0] == m for k in b)]:
            users = [u for u in shared
                     if all((method, s, u) in a and (baseline, s, u) in b for s in seeds)]
            for metric in PAIRED_METRICS:
                diffs = []
                for user in users:
                    x = [getattr(a[(method, s, user)], metric) for s in seeds]
                    y = [getattr(b[(baseline, s, user)], metric) for s in seeds]
                    if any(v is None for v in x + y):
                        continue
                    diffs.append(statistics.fmean(x) - statistics.fmean(y))
                if diffs:
                    out.append(PairedDiff(
                        method=method, baseline=baseline, metric=metric, users=len(diffs),
                        mean_diff=statistics.fmean(diffs), better=sum(d > 0 for d in diffs),
                        worse=sum(d < 0 for d in diffs), p_value=_wilcoxon_p(diffs),
                    ))
    return RunComparison(run_id=run_id, against=against, seeds=seeds, paired=tuple(out))


def stored_comparison(store: UserStore, run_id: int, against: int) -> RunComparison:
    evals = EvalStore(store)
    evals.run(against)  # an unknown run is named before any work
    return compare_runs(evals.results(run_id), evals.results(against), run_id, against)


def comparison_caption(comparison: RunComparison) -> str:
    seeds = ", ".join(map(str, comparison.seeds))
    return (
        f"Run {comparison.run_id} against run {comparison.against}, paired by user over the "
        f"same targets (each user's mean over seeds {seeds}): mean difference, two-sided "
        "Wilcoxon signed-rank p, users better ↑ and worse ↓."
    )


def comparison_table(comparison: RunComparison) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows (one per pair of methods), or None when no pair has users."""
    if not comparison.paired:
        return None
    shown = [m for m in PAIRED_METRICS if any(d.metric == m for d in comparison.paired)]
    header = [f"run {comparison.run_id} vs run {comparison.against}"]
    header += [METRIC_LABELS[m] for m in shown]
    rows = []
    for pair in dict.fromkeys((d.method, d.baseline) for d in comparison.paired):
        by_metric = {d.metric: d for d in comparison.paired if (d.method, d.baseline) == pair}
        rows.append([f"{pair[0]} vs {pair[1]}"]
                    + [format_paired(by_metric[m]) if m in by_metric else "n/a" for m in shown])
    return header, rows


def build_report(
    run: StoredRun,
    results: Sequence[ResultRow],
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    users: Sequence[str] | None = None,
    meteor_note: str = "",
    wordnet: Any = None,
) -> EvalReport:
    """Aggregate a run's stored rows over the users that have every (method, seed).

    ``wordnet`` (``metrics.load_wordnet()``) lets the second table score METEOR; without
    it that column is n/a."""
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
            texts, references = [p.text for p in pairs], [p.reference for p in pairs]
            paper = metrics.paper_scores(texts, references, wordnet=wordnet)
            per_seed["bleu"].append(paper.bleu)
            per_seed["paper_rouge1"].append(paper.rouge1)
            per_seed["paper_rougeL"].append(paper.rougeL)
            per_seed["paper_meteor"].append(paper.meteor)
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
                differences=sum(r.differences for r in mine),
                uninformative=sum(r.uninformative for r in mine),
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
        selection=config.get("selection"),
        paper_note=metrics.word_tokens().note if wordnet is not None else "",
    )


def stored_report(store: UserStore, run_id: int) -> EvalReport:
    """A stored run's table, over every method, seed and user it holds."""
    evals = EvalStore(store)
    run = evals.run(run_id)
    status = metrics.wordnet_status()
    return build_report(
        run,
        evals.results(run_id),
        meteor_note=status.message,
        wordnet=metrics.load_wordnet(status),
    )


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
    """The first table's columns."""
    main = [m for m in METRICS if not m.startswith("paper_")]
    return [m for m in main if m != "judge" or any(r.judged for r in report.rows)]


PAPER_CAPTION = (
    "Scored as the published evaluation scores (the scores to set beside the paper's): "
    "ROUGE without stemming, as rouge-score's bootstrap median of the F1 scores; METEOR on "
    "nltk word tokens; the same corpus BLEU."
)


def paper_table(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the second table: each method scored the published way."""
    header = ["Method"] + [METRIC_LABELS[m] for m in PAPER_METRICS]
    rows = [
        [r.method] + [format_value(m, r.metrics[m]) for m in PAPER_METRICS] for r in report.rows
    ]
    return header, rows


def header_lines(report: EvalReport) -> list[str]:
    from .split import params_from_dict

    lines = [
        f"Run {report.run_id} ({report.status}): {len(report.users)} users, "
        f"{report.split} targets, seeds {', '.join(map(str, report.seeds))}",
        f"Model: {report.model_id}; embedder: {report.embedder_id}",
        f"Split {report.split_id}: {params_from_dict(report.split_params).describe()}",
        preset_line(report),
        f"Engine: k={report.engine['k']}, m={report.engine['m']}, n={report.engine['n']}, "
        f"max_tokens={report.engine['generation']['max_tokens']} (generation) / "
        f"{report.engine['analysis']['max_tokens']} (analysis), "
        f"temperature {report.engine['generation']['temperature']}, reviews in prompts cut at "
        f"{report.engine['max_review_chars']} chars"
        + (
            f", descriptions at {report.engine['max_description_chars']}"
            if report.engine.get("max_description_chars")
            else ""
        ),
        "dpl profile: "
        + (
            "measured differences in words given"
            if report.engine.get("measured_in_profile")
            else "no measured differences"
        )
        + (
            ", uninformative LLM differences left out"
            if report.engine.get("drop_uninformative")
            else ", every LLM difference given"
        ),
        f"Elapsed: {report.elapsed_s:.0f} s",
    ]
    if report.incomplete_users:
        lines.append(
            f"{report.incomplete_users} selected users lack some results and are left out "
            "(re-run the same command to finish them)."
        )
    meteors = [r.metrics[m].mean for r in report.rows for m in ("meteor", "paper_meteor")]
    if any(v is None for v in meteors) and report.meteor_note:
        lines.append(report.meteor_note)
    if report.paper_note:
        lines.append(report.paper_note)
    for r in report.rows:
        if r.differences:
            lines.append(uninformative_line(r))
    for r in report.rows:
        if r.judged:
            lines.append(
                f"Judge ({report.judge_model}) on {r.method}: {r.judged} replies, "
                f"{r.judge_failures} unparsable (left out of the mean)."
            )
    return lines


def preset_line(report: EvalReport) -> str:
    from ..method.presets import preset

    # Runs stored before presets existed ran dpl's choices.
    chosen = preset(report.engine.get("preset", "dpl"))
    if chosen.selection == "paper" and report.selection is None:
        return (
            f"Preset {chosen.name}, as run before its representative users followed the "
            "published row order (reviewers oldest first, float64 vectors)"
        )
    return f"Preset {chosen.describe()}"


def uninformative_line(row: MethodRow) -> str:
    """``dpl: 62% of the LLM's differences uninformative (298 of 480 entries)``."""
    share = row.uninformative_share or 0.0
    return (
        f"{row.method}: {share:.0%} of the LLM's differences uninformative "
        f"({row.uninformative} of {row.differences} entries; a better model scores lower)"
    )


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
    header, rows = paper_table(report)
    out.write(f"\n{PAPER_CAPTION}\n\n")
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|---|" + "---:|" * (len(header) - 1) + "\n")
    for cells in rows:
        out.write("| " + " | ".join(cells) + " |\n")
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
        if row.differences:
            writer.writerow(
                [
                    report.run_id,
                    report.split,
                    row.method,
                    "uninformative",
                    f"{row.uninformative_share:.6f}",
                    "",
                    len(report.seeds),
                    len(report.users),
                    json.dumps([row.uninformative, row.differences]),
                    report.model_id,
                ]
            )
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
        raise EngineError(
            f"Cannot create the output folder {str(folder)!r}: {err.strerror or err}. Pass --out "
            "a folder you can write to."
        ) from err
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
