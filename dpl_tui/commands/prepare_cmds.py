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
    AdapterOption,
    DbOption,
    ModelOption,
    PresetOption,
    err_console,
    eta_progress,
    open_store,
    stop_on_terminate,
    threads_note,
    user_errors,
)
from .engine_cmds import KOption, MOption, NOption
from .eval_cmds import (
    AnalysisTokensOption,
    MaxTokensOption,
    MaxUserOption,
    MinCharsOption,
    MinItemOption,
    MinUserOption,
    ReviewCharsOption,
    _chosen_split,
    _eval_config,
    _runner,
)

PREPARE_EPILOG = (
    "Without --split, each user's default target is the one the app and `dpl generate` use "
    "(the latest review, held out), under the saved settings. With --split, the targets and "
    "options are those of `dpl eval` with the same options, so the evaluation reads what was "
    "prepared. Example: dpl prepare --split test --users 40 --seed 1 --seed 2"
)


def _progress():
    return eta_progress("Preparing", disable=not err_console.is_terminal)


class _Tally:
    """Targets done, items ready and LLM calls made, from any thread."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.targets = self.items = self.calls = 0

    def add(self, prepared) -> None:  # prepared: dpl_engine.Prepared
        with self.lock:
            self.targets += 1
            self.items += prepared.items
            self.calls += prepared.llm_calls


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
    from dpl_engine import Cancelled, CancelToken, EngineError

    with user_errors():
        if concurrency < 1:
            raise EngineError(f"--concurrency must be at least 1 (got {concurrency}).")
        if which is not None and which not in ("val", "test"):
            raise EngineError(f"--split must be 'val' or 'test' (got {which!r}).")
        if not user_ids and not all_users and not (which and users):
            raise EngineError(
                "Name the users to prepare, or pass --all (with --split, --users N also works)."
            )
        with open_store(db) as store:
            tally = _Tally()
            token = CancelToken()
            started = time.perf_counter()
            with stop_on_terminate(), _progress() as bar:
                task = bar.add_task("prepare", total=None, note="loading the model")

                def done(user: str, prepared) -> None:
                    tally.add(prepared)
                    bar.update(task, advance=1, note=f"{user}: {prepared.items} items")

                try:
                    if which is None:
                        _prepare_defaults(
                            store,
                            user_ids,
                            all_users,
                            model,
                            rest,
                            concurrency,
                            token,
                            bar,
                            task,
                            done,
                            k=k,
                            m=m,
                            n=n,
                            seed=(seed or [42])[0],
                            preset=preset,
                            max_description_chars=max_description_chars,
                            adapter=adapter,
                        )
                    else:
                        _prepare_split(
                            store,
                            which,
                            user_ids,
                            users,
                            seed,
                            model,
                            concurrency,
                            token,
                            bar,
                            task,
                            done,
                            thresholds=(
                                min_chars,
                                min_user_reviews,
                                max_user_reviews,
                                min_item_reviewers,
                            ),
                            k=k,
                            m=m,
                            n=n,
                            preset=preset,
                            max_tokens=max_tokens,
                            analysis_max_tokens=analysis_max_tokens,
                            max_review_chars=max_review_chars,
                            max_description_chars=max_description_chars,
                            adapter=adapter,
                        )
                except (KeyboardInterrupt, Cancelled):
                    token.cancel()
                    bar.stop()
                    err_console.print(
                        Text(
                            f"Stopped after {time.perf_counter() - started:.0f} s: "
                            f"{tally.targets} targets ready; every finished item is cached. "
                            "Run the same command again to continue."
                        )
                    )
                    raise typer.Exit(130) from None
    err_console.print(
        Text(
            f"Prepared {tally.targets} targets in {time.perf_counter() - started:.0f} s: "
            f"{tally.items} comparison items ready, {tally.calls} LLM calls made "
            "(the rest came from the cache)."
        )
    )


def _announce(bar, task, total: int, generator, what: str) -> None:
    bar.update(task, total=total, note="")
    bar.console.print(
        Text(f"{what}: {total} targets; model {generator.model_id} ({threads_note(generator)}).")
    )


def _prepare_defaults(
    store, user_ids, all_users, model, rest, concurrency, token, bar, task, done, **options
) -> None:
    from dpl_engine.method import concurrent
    from dpl_engine.errors import NotEnoughHistoryError

    from .engine_cmds import _engine

    engine = _engine(store, model, **options)
    wanted = list(dict.fromkeys(user_ids or []))
    if all_users:
        wanted += [u.user_id for u in store.users() if u.user_id not in set(wanted)]
    for user_id in wanted:
        store.user_history(user_id)  # an unknown user fails here, before any work
    _announce(bar, task, len(wanted), engine.generator, "Default targets")

    def one(user_id: str, stop) -> None:
        try:
            target = engine.held_out_target(user_id)
        except NotEnoughHistoryError as err:
            bar.console.print(Text(f"skipped {user_id}: {err}"))
            bar.update(task, advance=1)
            return
        done(user_id, engine.prepare(target, rest=rest, cancel=stop))

    for _ in concurrent.bounded(one, wanted, concurrency, token):
        pass


def _prepare_split(
    store,
    which,
    user_ids,
    users,
    seeds,
    model,
    concurrency,
    token,
    bar,
    task,
    done,
    *,
    thresholds,
    adapter=None,
    **options,
) -> None:
    from dpl_engine import EngineError

    chosen = _chosen_split(store, thresholds)
    config = _eval_config("dpl", users, seeds, which, **options)
    runner = _runner(store, chosen, model, config, adapter=adapter)
    in_split = {u.user_id for u in chosen.users}
    wanted = list(dict.fromkeys(user_ids or []))
    unknown = [u for u in wanted if u not in in_split]
    if unknown:
        raise EngineError(
            f"Not in split {chosen.split_id}: {', '.join(unknown)}. Its users are listed by "
            "`dpl split` (or pick them with --users N)."
        )
    if not wanted:
        wanted = list(runner.selected_users())
    _announce(
        bar,
        task,
        len(wanted) * len(config.seeds),
        runner.generator,
        f"Split {chosen.split_id} ({which} targets, seeds {', '.join(map(str, config.seeds))})",
    )
    runner.prepare(
        wanted,
        on_done=lambda user, _seed, prepared: done(user, prepared),
        cancel=token,
        concurrency=concurrency,
    )


def register(app: typer.Typer) -> None:
    app.command("prepare", epilog=PREPARE_EPILOG)(prepare)


__all__ = ["register"]
