"""``dpl prepare``: compute comparison sets, differences and profiles ahead of time.

What it computes is cached in the store under the keys the app, ``dpl generate`` and
``dpl eval`` read, so a later request makes one LLM call (the review) instead of ten.
Finished items are stored one by one: Ctrl-C keeps them, and the same command resumes.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.text import Text

from ..common import (
    err_console,
    eta_progress,
    open_store,
    stop_on_terminate,
    threads_note,
    user_errors,
)
from ..configs import EngineOptions, PrepareRequest, SplitThresholds, eval_config
from .builders import chosen_split, command_engine, evaluation
from .options import (
    AdapterOption,
    AnalysisTokensOption,
    DbOption,
    KOption,
    MaxTokensOption,
    MaxUserOption,
    MinCharsOption,
    MinItemOption,
    MinUserOption,
    ModelOption,
    MOption,
    NOption,
    PresetOption,
    ReviewCharsOption,
)

PREPARE_EPILOG = (
    "Without --split, each user's default target is the one the app and `dpl generate` use "
    "(the latest review, held out), under the saved settings. With --split, the targets and "
    "options are those of `dpl eval` with the same options, so the evaluation reads what was "
    "prepared. Options the chosen kind of target would ignore are refused. Example: dpl prepare "
    "--split test --users 40 --seed 1 --seed 2"
)


class _Preparing:
    """One `dpl prepare` under way: its bar on stderr, its tally (targets done, items ready, LLM
    calls made, from any thread) and the token that cancels its work."""

    def __init__(self, bar) -> None:  # bar: rich.progress.Progress
        import threading

        from dpl_engine import CancelToken

        self.bar = bar
        self.task = bar.add_task("prepare", total=None, note="loading the model")
        self.token = CancelToken()
        self.lock = threading.Lock()
        self.targets = self.items = self.calls = 0

    def announce(self, total: int, generator, what: str) -> None:
        self.bar.update(self.task, total=total, note="")
        self.bar.console.print(
            Text(
                f"{what}: {total} targets; model {generator.model_id} ({threads_note(generator)})."
            )
        )

    def done(self, user: str, prepared) -> None:  # prepared: dpl_engine.Prepared
        with self.lock:
            self.targets += 1
            self.items += prepared.items
            self.calls += prepared.llm_calls
        self.bar.update(self.task, advance=1, note=f"{user}: {prepared.items} items")

    def skipped(self, user: str, why: Exception) -> None:
        self.bar.console.print(Text(f"skipped {user}: {why}"))
        self.bar.update(self.task, advance=1)


def prepare(
    user_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Users to prepare (see `dpl users`).", metavar="[USER]..."),
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user (of the split, with --split).")
    ] = False,
    which: Annotated[
        str | None,
        typer.Option("--split", help="Prepare the evaluation's 'test' or 'val' targets."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option("--users", help="With --split: the first N users `dpl eval --users N` takes."),
    ] = None,
    seed: Annotated[
        list[int] | None,
        typer.Option("--seed", help="Seed for KMeans and sampling; repeat as for dpl eval (42)."),
    ] = None,
    rest: Annotated[
        bool,
        typer.Option(
            "--rest",
            help="Also the user's other comparable items, most relevant first (they serve "
            "any later target of the user).",
        ),
    ] = False,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", help="Users prepared at once (for a server backend)."),
    ] = 1,
    k: KOption = None,
    m: MOption = None,
    n: NOption = None,
    preset: PresetOption = None,
    max_tokens: MaxTokensOption = None,
    analysis_max_tokens: AnalysisTokensOption = None,
    max_review_chars: ReviewCharsOption = None,
    max_description_chars: Annotated[
        int | None,
        typer.Option(
            "--max-description-chars",
            help="Cut item descriptions in prompts (default: the setting; with --split, as "
            "for dpl eval: whole).",
        ),
    ] = None,
    min_chars: MinCharsOption = None,
    min_user_reviews: MinUserOption = None,
    max_user_reviews: MaxUserOption = None,
    min_item_reviewers: MinItemOption = None,
    db: DbOption = None,
) -> None:
    """Compute comparison users, differences and profiles ahead, for many users."""
    from dpl_engine import Cancelled

    request = PrepareRequest(
        user_ids=tuple(user_ids or ()),
        all_users=all_users,
        split=which,
        users=users,
        seeds=tuple(seed or ()),
        rest=rest,
        model=model,
        adapter=adapter,
        concurrency=concurrency,
        options=EngineOptions(
            k=k,
            m=m,
            n=n,
            preset=preset,
            max_tokens=max_tokens,
            analysis_max_tokens=analysis_max_tokens,
            max_review_chars=max_review_chars,
            max_description_chars=max_description_chars,
        ),
        thresholds=SplitThresholds(
            min_chars=min_chars,
            min_user_reviews=min_user_reviews,
            max_user_reviews=max_user_reviews,
            min_item_reviewers=min_item_reviewers,
        ),
    )
    with user_errors():
        request.check()
        with open_store(db) as store:
            started = time.perf_counter()
            with stop_on_terminate(), _bar() as bar:
                run = _Preparing(bar)
                try:
                    if request.split is None:
                        _prepare_defaults(store, request, run)
                    else:
                        _prepare_split(store, request, run)
                except (KeyboardInterrupt, Cancelled):
                    run.token.cancel()
                    bar.stop()
                    err_console.print(
                        Text(
                            f"Stopped after {time.perf_counter() - started:.0f} s: "
                            f"{run.targets} targets ready; every finished item is cached. "
                            "Run the same command again to continue."
                        )
                    )
                    raise typer.Exit(130) from None
    err_console.print(
        Text(
            f"Prepared {run.targets} targets in {time.perf_counter() - started:.0f} s: "
            f"{run.items} comparison items ready, {run.calls} LLM calls made "
            "(the rest came from the cache)."
        )
    )


def _bar():  # -> rich.progress.Progress
    return eta_progress("Preparing", disable=not err_console.is_terminal)


def _prepare_defaults(store, request: PrepareRequest, run: _Preparing) -> None:
    """Each named user's default target: the one the app and `dpl generate` use."""
    from dpl_engine.errors import NotEnoughHistoryError
    from dpl_engine.method import concurrent

    engine = command_engine(
        store, request.default_options(), model=request.model, adapter=request.adapter
    )
    wanted = list(dict.fromkeys(request.user_ids))
    if request.all_users:
        wanted += [u.user_id for u in store.users() if u.user_id not in set(wanted)]
    for user_id in wanted:
        store.user_history(user_id)  # an unknown user fails here, before any work
    run.announce(len(wanted), engine.generator, "Default targets")

    def one(user_id: str, stop) -> None:
        try:
            target = engine.held_out_target(user_id)
        except NotEnoughHistoryError as err:
            run.skipped(user_id, err)
            return
        run.done(user_id, engine.prepare(target, rest=request.rest, cancel=stop))

    for _ in concurrent.bounded(one, wanted, request.concurrency, run.token):
        pass


def _prepare_split(store, request: PrepareRequest, run: _Preparing) -> None:
    """The dpl targets of `dpl eval --split` with the same options, for every seed."""
    from dpl_engine import EngineError
    from user_store.config import Settings

    evaluating = request.evaluation()
    chosen = chosen_split(store, evaluating.thresholds)
    settings = Settings.load()
    config = eval_config(settings, evaluating)
    runner = evaluation(store, chosen, config, settings, evaluating)
    in_split = {u.user_id for u in chosen.users}
    wanted = list(dict.fromkeys(request.user_ids))
    unknown = [u for u in wanted if u not in in_split]
    if unknown:
        raise EngineError(
            f"Not in split {chosen.split_id}: {', '.join(unknown)}. Its users are listed by "
            "`dpl split` (or pick them with --users N)."
        )
    if not wanted:
        wanted = list(runner.selected_users())
    run.announce(
        len(wanted) * len(config.seeds),
        runner.generator,
        f"Split {chosen.split_id} ({evaluating.split} targets, seeds "
        f"{', '.join(map(str, config.seeds))})",
    )
    runner.prepare(
        wanted,
        on_done=lambda user, _seed, prepared: run.done(user, prepared),
        cancel=run.token,
        concurrency=request.concurrency,
    )


def register(app: typer.Typer) -> None:
    app.command("prepare", epilog=PREPARE_EPILOG)(prepare)


__all__ = ["register"]
