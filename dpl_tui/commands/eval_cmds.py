"""``dpl split`` and ``dpl eval``: the paper's evaluation on the data in the store.

Models load only inside ``dpl eval``, so ``dpl --help`` stays fast. Progress
goes to stderr; the table goes to stdout (and to files with ``--out``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..common import (
    console,
    err_console,
    eta_progress,
    open_store,
    stop_on_terminate,
    threads_note,
    user_errors,
)
from ..configs import EngineOptions, EvalRequest, SplitThresholds, check_split, eval_config
from .builders import chosen_split, evaluation, no_users_message
from .options import (
    AdapterOption,
    AnalysisTokensOption,
    DbOption,
    JsonOption,
    MaxTokensOption,
    MaxUserOption,
    MinCharsOption,
    MinItemOption,
    MinUserOption,
    ModelOption,
    PersonalOption,
    PresetOption,
    ReviewCharsOption,
)

SPLIT_EPILOG = (
    "Short reviews are dropped, then users and items below the thresholds are removed "
    "repeatedly until nothing changes. Each user's latest review is the test target, the one "
    "before it the validation target, the rest the profile. With --paper, the paper's whole "
    "preparation runs instead (item description filter, de-duplication, the last 10 reviews "
    "as inputs, a second fixed point on the profiles) and the counts after every stage are "
    "printed. The split is stored with its thresholds; the same thresholds on the same data "
    "give the same split."
)
EVAL_EPILOG = (
    "Uses the split given by the threshold options, else the latest stored split, else the "
    "paper's thresholds. Every generation and score is stored: re-running the same command "
    "skips finished work, and Ctrl-C keeps it. A run moves to another store of the same reviews "
    "with --report N --export FILE there and --import FILE here. Example: dpl eval --methods "
    "none,rag,profile,dpl --users 20 --seed 1 --seed 2 --seed 3 --out results/"
)


def split(
    paper: Annotated[
        bool,
        typer.Option("--paper", help="Run the paper's whole preparation (all eight stages)."),
    ] = False,
    min_chars: MinCharsOption = None,
    min_user_reviews: MinUserOption = None,
    max_user_reviews: MaxUserOption = None,
    min_item_reviewers: MinItemOption = None,
    min_description_chars: Annotated[
        int | None,
        typer.Option(
            "--min-description-chars", help="--paper: shortest item description (paper: 100)."
        ),
    ] = None,
    max_description_chars: Annotated[
        int | None,
        typer.Option(
            "--max-description-chars", help="--paper: longest item description (paper: 2000)."
        ),
    ] = None,
    item_fields: Annotated[
        bool | None,
        typer.Option(
            "--item-fields/--no-item-fields",
            help="--paper: items need a title, categories and a rating count (paper: yes).",
        ),
    ] = None,
    inputs: Annotated[
        int | None,
        typer.Option("--inputs", help="--paper: each user's last reviews kept as inputs (10)."),
    ] = None,
    min_profile_item_users: Annotated[
        int | None,
        typer.Option(
            "--min-profile-item-users",
            help="--paper: users an item needs among the profile reviews (paper: 5).",
        ),
    ] = None,
    min_profile_reviews: Annotated[
        int | None,
        typer.Option(
            "--min-profile-reviews",
            help="--paper: profile reviews a user needs on such items (paper: 8).",
        ),
    ] = None,
    suggest_users: Annotated[
        int,
        typer.Option(
            "--suggest-users",
            help="When nobody is left, suggest thresholds keeping this many users.",
        ),
    ] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Prepare the evaluation split (the paper's filters and targets) and store it."""
    from dpl_engine import EngineError
    from dpl_engine.evaluation import split as split_mod

    paper_only = {
        "--min-description-chars": min_description_chars,
        "--max-description-chars": max_description_chars,
        "--item-fields": item_fields,
        "--inputs": inputs,
        "--min-profile-item-users": min_profile_item_users,
        "--min-profile-reviews": min_profile_reviews,
    }
    with user_errors():
        if not paper:
            given = [flag for flag, value in paper_only.items() if value is not None]
            if given:
                raise EngineError(f"{given[0]} applies to the paper's preparation: add --paper.")
            params = SplitThresholds(
                min_chars=min_chars,
                min_user_reviews=min_user_reviews,
                max_user_reviews=max_user_reviews,
                min_item_reviewers=min_item_reviewers,
            ).params()
        else:
            params = _paper_params(
                min_chars=min_chars,
                min_user_reviews=min_user_reviews,
                max_user_reviews=max_user_reviews,
                min_item_reviewers=min_item_reviewers,
                min_description_chars=min_description_chars,
                max_description_chars=max_description_chars,
                item_fields=item_fields,
                inputs=inputs,
                min_profile_item_users=min_profile_item_users,
                min_profile_reviews=min_profile_reviews,
            )
        params.check()
        with open_store(db) as store:
            if paper:
                result = split_mod.prepare_paper(store, params)
                if not as_json:
                    console.print(_stages_table(result.stages))
                if not result.users:
                    # soft_wrap: the suggested command stays on one line, ready to copy
                    err_console.print(
                        Text(_paper_no_users_message(store, params, suggest_users)),
                        soft_wrap=True,
                    )
                    raise typer.Exit(1)
            else:
                result = split_mod.prepare(store, params)
                if not result.users:
                    err_console.print(Text(no_users_message(store, params, suggest_users)))
                    raise typer.Exit(1)
        profile_sizes = [len(u.profile) for u in result.users]
        summary = {
            "split_id": result.split_id,
            "params": split_mod.params_dict(params),
            "users": len(result.users),
            "items": result.items,
            "reviews": result.reviews,
            "iterations": result.iterations,
            "profile_reviews": {
                "min": min(profile_sizes),
                "median": sorted(profile_sizes)[len(profile_sizes) // 2],
                "max": max(profile_sizes),
            },
        }
        if result.stages:
            summary["stages"] = [asdict(stage) for stage in result.stages]
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        table = Table(title=f"Split {result.split_id}: {params.describe()}", title_justify="left")
        table.add_column("users", justify="right")
        table.add_column("items", justify="right")
        table.add_column("reviews", justify="right")
        table.add_column("profile reviews (min / median / max)", justify="right")
        table.add_column("iterations", justify="right")
        pr = summary["profile_reviews"]
        table.add_row(
            f"{len(result.users):,}",
            f"{result.items:,}",
            f"{result.reviews:,}",
            f"{pr['min']} / {pr['median']} / {pr['max']}",
            str(result.iterations),
        )
        console.print(table)


def _paper_params(**given):  # -> PaperSplitParams
    from dpl_engine.evaluation.paper_split import PAPER

    return replace(PAPER, **{name: value for name, value in given.items() if value is not None})


def _stages_table(stages) -> Table:  # stages: tuple[paper_split.Stage, ...]
    table = Table(title="The paper's preparation, stage by stage", title_justify="left")
    for col in ("stage", "what is kept", "reviews", "users", "items"):
        table.add_column(col, justify="left" if col == "what is kept" else "right")
    for stage in stages:
        rounds = "round" if stage.iterations == 1 else "rounds"
        name = stage.name + (f" ({stage.iterations} {rounds})" if stage.iterations else "")
        table.add_row(
            str(stage.number), name, f"{stage.reviews:,}", f"{stage.users:,}", f"{stage.items:,}"
        )
    return table


def _paper_no_users_message(store, params, min_users: int) -> str:
    from dpl_engine.evaluation import paper_split
    from user_store.eval_store import EvalStore

    evals = EvalStore(store)
    reviews, items = evals.review_rows(), evals.item_rows()
    prepared = paper_split.prepare_rows(reviews, items, params)
    stage = prepared.emptied_at
    assert stage is not None
    lines = [f"Stage {stage.number} ({stage.name}) leaves no user."]
    found = paper_split.suggest(reviews, items, params, min_users=min_users)
    if found is None:
        lines.append("No relaxed value of that stage's thresholds keeps anyone; import more data.")
        return "\n".join(lines)
    changed = {
        name: value
        for name, value in paper_split.PaperSplitParams.to_dict(found.params).items()
        if name != "kind" and value != getattr(paper_split.PAPER, name)
    }
    flags = paper_split.flags(changed)
    lines.append(f"Relaxed thresholds that keep {found.users} users: dpl split --paper {flags}")
    return "\n".join(lines)


# -- dpl eval ---------------------------------------------------------------------------
def _report_table(report) -> Table:  # report: EvalReport
    from dpl_engine.evaluation.report import METRIC_LABELS, format_value, shown_metrics

    cols = shown_metrics(report)
    table = Table(title=f"Evaluation run {report.run_id}", title_justify="left")
    table.add_column("Method")
    for c in cols:
        table.add_column(METRIC_LABELS[c], justify="right")
    table.add_column("LLM calls", justify="right")
    table.add_column("comparison items", justify="right")
    table.add_column("s / gen", justify="right")
    for row in report.rows:
        table.add_row(
            row.method,
            # Mean over ± std on two lines, so the table fits an 80-column terminal.
            *[format_value(c, row.metrics[c]).replace(" ± ", "\n±") for c in cols],
            f"{row.llm_calls:.1f}",
            f"{row.comparison_items:.1f}",
            f"{row.seconds:.1f}",
        )
    return table


def _paper_table(report) -> Table:  # report: EvalReport
    from dpl_engine.evaluation.report import PAPER_CAPTION, paper_table

    header, rows = paper_table(report)
    table = Table(caption=PAPER_CAPTION, caption_justify="left")
    table.add_column(header[0])
    for label in header[1:]:
        table.add_column(label, justify="right")
    for cells in rows:
        table.add_row(cells[0], *[c.replace(" ± ", "\n±") for c in cells[1:]])
    return table


def _paired_table(report) -> Table | None:  # report: EvalReport
    from dpl_engine.evaluation.report import paired_caption, paired_table

    paired = paired_table(report)
    return None if paired is None else _pairs(*paired, paired_caption(report))


def _pairs(header: list[str], rows: list[list[str]], caption: str) -> Table:
    """A paired-difference table: one row per pair, one column per metric."""
    table = Table(caption=caption, caption_justify="left")
    table.add_column(header[0])
    for label in header[1:]:
        table.add_column(label, justify="right")
    for cells in rows:
        # The difference over its p-value and counts, so the table fits 80 columns.
        table.add_row(cells[0], *[c.replace(" (", "\n(") for c in cells[1:]])
    return table


def _print_report(report, out: Path | None, as_json: bool) -> None:
    from dpl_engine.evaluation.report import header_lines, to_json, write_outputs

    if as_json:
        typer.echo(to_json(report))
    else:
        console.print(_report_table(report))
        console.print(_paper_table(report))
        paired = _paired_table(report)
        if paired is not None:
            console.print(paired)
        for line in header_lines(report):
            console.print(Text(line))
    if out is not None:
        for path in write_outputs(report, out):
            err_console.print(Text(f"wrote {path}"))


def _print_comparison(report, comparison, as_json: bool) -> None:
    """``--report N --against M``: run N's table, then each of its methods against M's."""
    from dataclasses import asdict

    from dpl_engine.evaluation.report import (
        comparison_caption,
        comparison_table,
        header_lines,
        to_json,
    )

    if as_json:
        import json

        typer.echo(
            json.dumps(
                {**json.loads(to_json(report)), "against": asdict(comparison)},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    console.print(_report_table(report))
    for line in header_lines(report):
        console.print(Text(line))
    made = comparison_table(comparison)
    if made is None:
        console.print(
            Text(
                f"Runs {comparison.run_id} and {comparison.against} have no method "
                "with results for the same users and seeds."
            )
        )
        return
    console.print(_pairs(*made, comparison_caption(comparison)))


class _EvalProgress:
    """One bar per method with its own ETA, on stderr."""

    def __init__(self, plan, methods: tuple[str, ...]) -> None:
        self.progress = eta_progress("{task.description:<8}")
        self.tasks = {
            m: self.progress.add_task(m, total=plan.total(m), completed=plan.finished(m), note="")
            for m in methods
        }

    def __enter__(self) -> _EvalProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event) -> None:  # event: CellEvent
        task = self.tasks[event.method]
        if event.kind == "start":
            self.progress.update(task, note=f"user {event.user_id} seed {event.seed}")
        elif event.kind == "done":
            self.progress.update(task, advance=1, note=f"{event.seconds:.1f} s")


def eval_(
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated methods: none, rag, profile, dpl.")
    ] = "none,rag,profile,dpl",
    users: Annotated[
        int | None,
        typer.Option("--users", help="Evaluate this many users of the split (default: all)."),
    ] = None,
    seed: Annotated[
        list[int] | None,
        typer.Option(
            "--seed", help="Seed for KMeans and sampling; repeat for mean ± std (default 42)."
        ),
    ] = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    personal: PersonalOption = True,
    which: Annotated[
        str, typer.Option("--split", help="Targets to generate: 'test' (latest review) or 'val'.")
    ] = "test",
    judge_model: Annotated[
        Path | None,
        typer.Option(
            "--judge-model",
            help="GGUF model that grades each review 0-10 (LLM as judge).",
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the table as Markdown, CSV and JSON here.", file_okay=False
        ),
    ] = None,
    report: Annotated[
        int | None, typer.Option("--report", help="Print a stored run again (no generation).")
    ] = None,
    against: Annotated[
        int | None,
        typer.Option(
            "--against",
            help="With --report N: pair run N with this run user by "
            "user (e.g. with an adapter against without).",
        ),
    ] = None,
    list_runs: Annotated[bool, typer.Option("--list", help="List stored evaluation runs.")] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="With --report N: also write the run (texts and scores) to this file "
            "(.jsonl, or .jsonl.gz).",
            dir_okay=False,
        ),
    ] = None,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            help="Add a run written by --export to this store; the same eval command then "
            "resumes it.",
            dir_okay=False,
        ),
    ] = None,
    min_chars: MinCharsOption = None,
    min_user_reviews: MinUserOption = None,
    max_user_reviews: MaxUserOption = None,
    min_item_reviewers: MinItemOption = None,
    k: Annotated[
        int | None, typer.Option("--k", help="Past reviews to retrieve (default 8).")
    ] = None,
    m: Annotated[
        int | None, typer.Option("--m", help="Other reviewers a comparison item needs (default 4).")
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Comparison users per item (default 4).")
    ] = None,
    max_tokens: MaxTokensOption = None,
    analysis_max_tokens: AnalysisTokensOption = None,
    max_review_chars: ReviewCharsOption = None,
    preset: PresetOption = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            help="Users evaluated at once (default 1). Worth raising with a server that has "
            "several slots; resuming is unchanged.",
        ),
    ] = 1,
    measured_in_profile: Annotated[
        bool,
        typer.Option(
            "--measured-in-profile",
            help="Give the dpl profile the measured differences in words (off by default).",
        ),
    ] = False,
    drop_uninformative: Annotated[
        bool,
        typer.Option(
            "--drop-uninformative",
            help="Leave LLM differences flagged as uninformative out of the dpl profile.",
        ),
    ] = False,
    max_description_chars: Annotated[
        int | None,
        typer.Option(
            "--max-description-chars",
            help="Cut item descriptions in prompts to this many characters (default: whole).",
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure how much each method personalizes: generate held-out reviews, score, tabulate."""
    from dpl_engine import EngineError

    with user_errors():
        with open_store(db) as store:
            if list_runs:
                _list(store, as_json)
                return
            if export is not None and report is None:
                raise EngineError("--export needs --report N: the run to write.")
            if import_file is not None:
                _import(store, import_file, out, as_json)
                return
            if against is not None and report is None:
                raise EngineError("--against needs --report N: the run to compare with it.")
            if report is not None:
                _report(store, report, against, export, out, as_json)
                return
            request = EvalRequest(
                methods=methods,
                users=users,
                seeds=tuple(seed or ()),
                split=which,
                options=EngineOptions(
                    k=k,
                    m=m,
                    n=n,
                    preset=preset,
                    max_tokens=max_tokens,
                    analysis_max_tokens=analysis_max_tokens,
                    max_review_chars=max_review_chars,
                    max_description_chars=max_description_chars,
                    measured_in_profile=measured_in_profile,
                    drop_uninformative=drop_uninformative,
                ),
                thresholds=SplitThresholds(
                    min_chars=min_chars,
                    min_user_reviews=min_user_reviews,
                    max_user_reviews=max_user_reviews,
                    min_item_reviewers=min_item_reviewers,
                ),
                model=model,
                adapter=adapter,
                personal=personal,
                judge_model=judge_model,
                concurrency=concurrency,
            )
            _run(store, request, out, as_json)


def _import(store, path: Path, out: Path | None, as_json: bool) -> None:
    """``--import FILE``: add an exported run to this store, then print its table."""
    from dpl_engine.evaluation.report import stored_report
    from dpl_engine.evaluation.run_file import import_run

    imported = import_run(store, path)
    err_console.print(
        Text(
            f"Run {imported.run.id}: {imported.added} results added from "
            f"{path}, {imported.already} already in the store."
        )
    )
    _print_report(stored_report(store, imported.run.id), out, as_json)


def _report(
    store, run_id: int, against: int | None, export: Path | None, out: Path | None, as_json: bool
) -> None:
    """``--report N``: a stored run's table again, paired with run ``against`` or exported."""
    from dpl_engine.evaluation.report import stored_report

    if against is not None:
        from dpl_engine.evaluation.report import stored_comparison

        _print_comparison(
            stored_report(store, run_id), stored_comparison(store, run_id, against), as_json
        )
        return
    _print_report(stored_report(store, run_id), out, as_json)
    if export is not None:
        from dpl_engine.evaluation.run_file import export_run

        written = export_run(store, run_id, export)
        err_console.print(Text(f"Run {run_id}: {written} results written to {export}."))


def _run(store, request: EvalRequest, out: Path | None, as_json: bool) -> None:
    """Generate and score what ``request`` asks for and is not stored yet, then the table."""
    from dpl_engine import EngineError
    from user_store.config import Settings

    check_split(request.split)
    chosen = chosen_split(store, request.thresholds)
    settings = Settings.load()
    config = eval_config(settings, request)
    if request.concurrency < 1:
        raise EngineError(f"--concurrency must be at least 1 (got {request.concurrency}).")
    runner = evaluation(store, chosen, config, settings, request)
    plan = runner.plan()
    err_console.print(
        Text(
            f"Run {plan.run.id}: {len(plan.users)} users x {len(config.seeds)} seeds x "
            f"{len(config.methods)} methods = {len(plan.cells)} generations, "
            f"{len(plan.done & {(mm, s, u) for u, mm, s in plan.cells})} already done. "
            f"Split {chosen.split_id}: {chosen.params.describe()}. Model "
            f"{runner.generator.model_id} ({threads_note(runner.generator)})."
        )
    )
    started = time.perf_counter()
    try:
        with stop_on_terminate(), _EvalProgress(plan, config.methods) as progress:
            result = runner.execute(plan, on_event=progress, concurrency=request.concurrency)
    except KeyboardInterrupt:
        done = len(runner.evals.done_cells(plan.run.id))
        err_console.print(
            Text(
                f"Stopped after {time.perf_counter() - started:.0f} s. {done} finished "
                "generations are saved; run the same command again to continue."
            )
        )
        raise typer.Exit(130) from None
    _print_report(result, out, as_json)


def _list(store, as_json: bool) -> None:
    from user_store.eval_store import EvalStore

    evals = EvalStore(store)
    if as_json:
        runs = [
            {
                "run_id": run.id,
                "status": run.status,
                "split": run.config["split"],
                "split_id": run.split_id,
                "model_id": run.config["model_id"],
                "generations": len(evals.done_cells(run.id)),
                "elapsed_s": run.elapsed_s,
                "created_at": run.created_at,
                "config": run.config,
            }
            for run in evals.runs()
        ]
        typer.echo(json.dumps(runs, indent=2))
        return
    table = Table(title="Evaluation runs", title_justify="left")
    for col in ("run", "status", "split", "model", "generations", "elapsed s", "created"):
        table.add_column(col)
    for run in evals.runs():
        table.add_row(
            str(run.id),
            run.status,
            f"{run.config['split']} (split {run.split_id})",
            run.config["model_id"],
            str(len(evals.done_cells(run.id))),
            f"{run.elapsed_s:.0f}",
            run.created_at,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("split", epilog=SPLIT_EPILOG)(split)
    app.command("eval", epilog=EVAL_EPILOG)(eval_)


__all__ = ["register"]
