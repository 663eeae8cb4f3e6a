"""``dpl compare`` and ``dpl generate``: the DPL method from the command line.

Models load only when a step needs them, and only inside the commands, so
``dpl --help`` stays fast. Review text is user data: it is printed as plain
text, never interpreted as Rich markup.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..common import console, err_console, open_store, user_errors
from ..configs import EngineOptions
from .builders import command_engine
from .options import (
    AdapterOption,
    DbOption,
    JsonOption,
    KOption,
    ModelOption,
    MOption,
    NOption,
    PersonalOption,
    PresetOption,
)

ItemOption = Annotated[
    str | None,
    typer.Option(
        "--item", help="Target item id (default: the user's most recent review, held out)."
    ),
]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Seed for KMeans and for sampling (same seed, same result).")
]
RefreshOption = Annotated[
    bool, typer.Option("--refresh", help="Recompute cached comparisons, differences and profiles.")
]

GENERATE_EPILOG = (
    "Without --item the target is the user's most recent review: it is hidden from every "
    "step, and printed after the generated review for comparison. The generated review is "
    "stored in the database with the model, prompt version and parameters."
)


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _item_label(item) -> str:  # item: Item
    return item.id if item.title == item.id else f"{item.title} ({item.id})"


MeasuredInProfileOption = Annotated[
    bool,
    typer.Option(
        "--measured-in-profile",
        help="Give the dpl profile the measured differences in words (off by default: no gain "
        "shown on the dev data, see docs/readme/eval.md).",
    ),
]
DropUninformativeOption = Annotated[
    bool,
    typer.Option(
        "--drop-uninformative",
        help="Leave the LLM differences flagged as uninformative out of the dpl profile.",
    ),
]
DescriptionCharsOption = Annotated[
    int | None,
    typer.Option(
        "--max-description-chars",
        help="Cut item descriptions in prompts to this many characters (default: the "
        "max_description_chars setting, 1000).",
    ),
]
BETTER_MODEL_HINT = (
    "The model's differences are only as good as the model: for findings you can trust, add a "
    "larger instruction-tuned GGUF (`dpl models add PATH`) or an LLM server (`dpl models add NAME "
    "--url ...`) and pass --model NAME."
)


def _target(engine, user_id: str, item: str | None, rating: float | None, title: str | None):
    from dpl_engine import EngineError

    if item is None:
        target = engine.held_out_target(user_id)
        if rating is not None or title is not None:
            target = replace(
                target,
                rating=target.rating if rating is None else float(rating),
                title=target.title if title is None else title,
            )
            if not 1 <= target.rating <= 5:
                raise EngineError(f"Rating {rating!r} is out of range: give a number from 1 to 5.")
        return target
    engine.store.item(item)  # an unknown item is named as such, before anything else
    own = engine.store.review(user_id, item)
    if own is None and (rating is None or title is None):
        raise EngineError(
            f"User {user_id!r} has not reviewed item {item!r}: give the review to write with "
            "--rating R and --title TEXT."
        )
    return engine.target(
        user_id,
        item,
        rating=own.rating if rating is None else rating,
        title=own.title if title is None else title,
    )


class _ProgressView:
    """The preparation steps as progress bars on stderr; gone once generation starts."""

    LABELS = {
        "retrieve": "Retrieving past reviews",
        "embed": "Embedding reviews",
        "compare": "Choosing comparison users",
        "measure": "Measuring differences (no model)",
        "differences": "Extracting differences",
        "profile": "Writing the profile",
        "generate": "Generating",
    }

    def __init__(self, enabled: bool, console=None) -> None:  # console: rich Console
        self.enabled = enabled
        self.console = console or err_console
        self.progress = None
        self.tasks: dict[str, Any] = {}
        self.cached: dict[str, int] = {}
        self.pending: dict[str, str] = {}
        """Comparison items whose differences have not arrived yet: id -> title."""
        self.shown: set[str] = set()

    def __enter__(self) -> _ProgressView:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}", markup=False),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        return self

    def update(self, event) -> None:  # event: ProgressEvent
        from dpl_engine import TokenEvent

        if self.progress is None or isinstance(event.value, TokenEvent):
            return  # a delta of the profile: its bar moves when the profile is done
        if event.cached and event.i > 0:
            self.cached[event.step] = self.cached.get(event.step, 0) + 1
        hits = self.cached.get(event.step, 0)
        note = f"{hits} cached" if hits else ""
        if event.step == "compare" and event.value is not None:
            item = event.value.item
            if item.id not in self.shown:
                self.pending[item.id] = item.title or item.id
        elif event.step == "differences" and event.value is not None:
            self._arrived(event)
        if event.step == "differences" and self.pending:
            waiting = f"{len(self.pending)} pending: " + ", ".join(self.pending.values())
            note = f"{note}; {waiting}" if note else waiting
        if event.step not in self.tasks:
            label = self.LABELS.get(event.step, event.step)
            self.tasks[event.step] = self.progress.add_task(label, total=max(event.n, 1), note=note)
        self.progress.update(
            self.tasks[event.step], total=max(event.n, 1), completed=event.i, note=note
        )
        if event.step == "generate":
            self.stop()

    def _arrived(self, event) -> None:  # event: ProgressEvent with a Differences
        """One item's differences, printed above the bars the moment they arrive."""
        d = event.value
        title = self.pending.pop(d.item_id, None) or event.detail or d.item_id
        if d.item_id in self.shown or self.progress is None:
            return
        self.shown.add(d.item_id)
        line = Text(f"{title}", style="bold")
        if d.structured:
            for key in ("writing", "emotional", "semantic"):
                line.append(f"\n  {key}: ", style="bold")
                line.append(getattr(d, key))
        else:
            line.append("\n  (free text) ", style="italic")
            line.append(d.raw or "")
        self.progress.console.print(line)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _measure_rows(md) -> list[tuple[str, float, float]]:  # md: MeasuredDifferences
    return [
        ("rating", md.user.rating, md.others.rating),
        ("words", md.user.words, md.others.words),
        ("words per sentence", md.user.sentence_words, md.others.sentence_words),
        ("lexical diversity", md.user.lexical_diversity, md.others.lexical_diversity),
        (
            "! per 100 words",
            md.user.exclamations_per_100_words,
            md.others.exclamations_per_100_words,
        ),
        (
            "I/me/my per 100 words",
            md.user.first_person_per_100_words,
            md.others.first_person_per_100_words,
        ),
        ("sentiment (-1..1)", md.user.sentiment, md.others.sentiment),
        ("readability (Flesch)", md.user.reading_ease, md.others.reading_ease),
        (
            "? per 100 words",
            md.user.questions_per_100_words,
            md.others.questions_per_100_words,
        ),
    ]


def _print_retrieved(retrieved) -> None:
    table = Table(title=Text("Retrieved past reviews (BM25)"), title_justify="left")
    for col, just in (
        ("#", "right"),
        ("Item", "left"),
        ("Score", "right"),
        ("Rating", "right"),
        ("Title", "left"),
    ):
        table.add_column(col, justify=just)
    for r in retrieved:
        table.add_row(
            str(r.rank),
            Text(r.entry.item.id),
            f"{r.score:.2f}",
            f"{r.entry.review.rating:g}",
            Text(_one_line(r.entry.review.title, 50)),
        )
    console.print(table)


def _also_retrieved(chosen, retrieved) -> list[str]:
    shown = {r.entry.item.id for r in retrieved}
    return [r.entry.item.id for r in chosen if r.entry.item.id in shown]


def _print_comparison_items(chosen, eligible: int, retrieved, config) -> None:
    title = (
        f"Comparison items (BM25 top {config.k} of the {eligible} past items with >= "
        f"{config.m} other reviewers)"
    )
    table = Table(title=Text(title), title_justify="left")
    for col, just in (
        ("#", "right"),
        ("Item", "left"),
        ("Score", "right"),
        ("Also retrieved", "left"),
    ):
        table.add_column(col, justify=just)
    also = set(_also_retrieved(chosen, retrieved))
    for r in chosen:
        table.add_row(
            str(r.rank),
            Text(r.entry.item.id),
            f"{r.score:.2f}",
            "yes" if r.entry.item.id in also else "",
        )
    console.print(table)
    if len(chosen) < config.k:
        console.print(
            Text(
                f"Only {len(chosen)} of the user's past items have >= {config.m} other "
                f"reviewers, so differences come from {len(chosen)} items, not {config.k}."
            )
        )


def _print_header(target, engine) -> None:  # target: Target, engine: Engine
    console.print(
        Text(
            f"User {target.user_id}, target item {_item_label(target.item)}, query title "
            f"{target.title!r}, preset {engine.config.preset}"
        )
    )


def _print_overall(pooled) -> None:  # pooled: MeasuredAccount | None
    if pooled is None:
        return
    console.print(Text("Measured differences, all comparison items", style="bold"))
    console.print(Text(pooled.text))
    console.print()


def _print_item_accounts(comparisons, per_item) -> None:  # per_item: list[MeasuredAccount]
    if not comparisons:
        return
    console.print(
        Text("Measured differences per comparison item (counted from the texts)", style="bold")
    )
    titles = {c.item.id: _item_label(c.item) for c in comparisons}
    for a in per_item:
        console.print(Text(f"{titles.get(a.item_id, a.item_id)}: ", style="bold") + Text(a.text))
    console.print()


def _print_comparisons(comparisons, measured, differences) -> None:
    from dpl_engine.method import informative

    if not comparisons:
        console.print(Text("None of the user's past items has enough other reviewers."))
        return
    by_item_measured = {m.item_id: m for m in measured}
    by_item_diff = {d.item_id: d for d in differences}
    flagged_any = False
    for cs in comparisons:
        title = f"{_item_label(cs.item)}: {len(cs.users)} of {cs.reviewers} other reviewers"
        table = Table(title=Text(title), title_justify="left")
        for col in ("User", "Cluster", "Distance", "Similarity", "Rating", "Review"):
            table.add_column(col, justify="left" if col in ("User", "Review") else "right")
        table.add_row(
            Text(f"{cs.user_review.user_id} (this user)"),
            "",
            "",
            "1.000",
            f"{cs.user_review.rating:g}",
            Text(_one_line(cs.user_review.text, 60)),
        )
        for u in cs.users:
            table.add_row(
                Text(u.user_id),
                str(u.cluster),
                f"{u.distance:.3f}",
                f"{u.similarity:.3f}",
                f"{u.rating:g}",
                Text(_one_line(u.review.text, 60)),
            )
        console.print(table)
        md = by_item_measured.get(cs.item.id)
        if md is not None:  # its account in words is printed above, before the model's
            mt = Table(title=Text("Measured differences"), title_justify="left")
            for col in ("Measure", "This user", "Others (mean)", "Difference"):
                mt.add_column(col, justify="left" if col == "Measure" else "right")
            for name, mine, theirs in _measure_rows(md):
                mt.add_row(name, f"{mine:.2f}", f"{theirs:.2f}", f"{mine - theirs:+.2f}")
            console.print(mt)
        d = by_item_diff.get(cs.item.id)
        if d is not None:
            verdicts = {v.dimension: v for v in informative.check(d, cs)}
            flagged_any |= any(not v.informative for v in verdicts.values())
            dt = Table(
                title=Text("The model's differences (LLM, not checked against the texts)"),
                title_justify="left",
                show_header=False,
            )
            dt.add_column("Dimension")
            dt.add_column("Difference")
            rows = (
                [(k, getattr(d, k)) for k in ("writing", "emotional", "semantic")]
                if d.structured
                else [("raw", d.raw)]
            )
            for key, text in rows:
                label = "free text (no valid JSON)" if key == "raw" else key
                v = verdicts[key]
                if v.informative:
                    dt.add_row(label, Text(text))
                else:
                    dt.add_row(
                        Text(label, style="dim"),
                        Text(text, style="dim")
                        + Text(f"  [uninformative: {v.reason}]", style="dim italic"),
                    )
            console.print(dt)
    if flagged_any:
        console.print(Text(BETTER_MODEL_HINT, style="dim"))


def compare(
    user_id: Annotated[str, typer.Argument(help="The user's id (see `dpl users`).")],
    item: ItemOption = None,
    title: Annotated[
        str | None,
        typer.Option(
            "--title",
            help="Review title used as the retrieval query (default: the "
            "user's own title for the item).",
        ),
    ] = None,
    db: DbOption = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    as_json: JsonOption = False,
    k: KOption = None,
    m: MOption = None,
    n: NOption = None,
    seed: SeedOption = 42,
    preset: PresetOption = None,
    refresh: RefreshOption = False,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Skip the LLM's differences (no model is loaded).")
    ] = False,
    max_description_chars: DescriptionCharsOption = None,
) -> None:
    """The retrieved items, the comparison users per item and how this user differs from them.

    The measured differences are printed before the model is loaded: they need none."""
    from dpl_engine.method import describe, informative
    from dpl_engine.method.cache import to_json

    with user_errors():
        store = open_store(db)
        try:
            options = EngineOptions(
                k=k, m=m, n=n, seed=seed, preset=preset, max_description_chars=max_description_chars
            )
            engine = command_engine(store, options, model=model, adapter=adapter)
            if item is not None and store.review(user_id, item) is None:
                # Not reviewed by the user: the rating is unused here, the title is the query.
                target = engine.target(user_id, item, rating=5.0, title=title or "")
            else:
                target = _target(engine, user_id, item, None, title)
            with _ProgressView(enabled=err_console.is_terminal) as view:
                retrieved = engine.retrieve(target)
                chosen, eligible = engine.comparison_items(target)
                comparisons = engine.comparisons(target, progress=view.update, refresh=refresh)
            measured = engine.measured(comparisons)
            pooled, per_item = describe.accounts(measured)
            if not as_json:
                # Everything that needs no model first: loading it and its calls take longest.
                _print_header(target, engine)
                _print_retrieved(retrieved)
                _print_comparison_items(chosen, eligible, retrieved, engine.config)
                _print_overall(pooled)
                _print_item_accounts(comparisons, per_item)
            differences = []
            if not no_llm:
                with _ProgressView(enabled=err_console.is_terminal) as view:
                    differences = engine.differences(target, progress=view.update, refresh=refresh)
        finally:
            store.close()
    if as_json:
        _echo_json(
            to_json(
                {
                    "target": target,
                    "measured_account": {"overall": pooled, "items": per_item},
                    "preset": engine.config.preset,
                    "retrieved": retrieved,
                    "comparison_items": {
                        "eligible": eligible,
                        "chosen": chosen,
                        "also_retrieved": _also_retrieved(chosen, retrieved),
                    },
                    "comparisons": comparisons,
                    "measured": measured,
                    "differences": differences,
                    "informative": informative.check_all(differences, comparisons),
                }
            )
        )
        return
    _print_comparisons(comparisons, measured, differences)


def generate(
    user_id: Annotated[str, typer.Argument(help="The user's id (see `dpl users`).")],
    item: ItemOption = None,
    rating: Annotated[
        float | None, typer.Option("--rating", help="The rating the review gives, 1 to 5.")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="The review's title.")] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="dpl, profile (no differences), rag (past reviews "
            "only) or none (item, rating and title only).",
        ),
    ] = "dpl",
    model: ModelOption = None,
    adapter: AdapterOption = None,
    personal: PersonalOption = True,
    db: DbOption = None,
    as_json: JsonOption = False,
    seed: SeedOption = 42,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Longest review in tokens (default 384).")
    ] = None,
    refresh: RefreshOption = False,
    k: KOption = None,
    m: MOption = None,
    n: NOption = None,
    preset: PresetOption = None,
    measured_in_profile: MeasuredInProfileOption = False,
    drop_uninformative: DropUninformativeOption = False,
    max_description_chars: DescriptionCharsOption = None,
) -> None:
    """Write the user's review of an item with a local model, streamed as it is written."""
    from dpl_engine import METHODS, EngineError, ProgressEvent, ResultEvent, TokenEvent
    from dpl_engine.method.cache import to_json

    result = None
    with user_errors():
        if method not in METHODS:
            raise EngineError(f"Unknown method {method!r}: choose one of {', '.join(METHODS)}.")
        store = open_store(db)
        try:
            options = EngineOptions(
                k=k,
                m=m,
                n=n,
                seed=seed,
                preset=preset,
                max_tokens=max_tokens,
                measured_in_profile=measured_in_profile,
                drop_uninformative=drop_uninformative,
                max_description_chars=max_description_chars,
            )
            engine = command_engine(store, options, model=model, adapter=adapter, personal=personal)
            target = _target(engine, user_id, item, rating, title)
            stream_out = not as_json
            with _ProgressView(enabled=err_console.is_terminal) as view:
                for event in engine.run(target, method, refresh=refresh):  # type: ignore[arg-type]
                    if isinstance(event, ProgressEvent):
                        view.update(event)
                    elif isinstance(event, TokenEvent):
                        view.stop()
                        if stream_out:
                            sys.stdout.write(event.text)
                            sys.stdout.flush()
                    elif isinstance(event, ResultEvent):
                        result = event.result
            cost = _prompt_cost(engine, result) if result is not None else None
        finally:
            store.close()
    assert result is not None
    if as_json:
        _echo_json({**to_json(result), "prompt_cost": cost})
        return
    sys.stdout.write("\n")
    for note in result.notes:
        err_console.print(Text(f"note: {note}"))
    if result.stats is not None:
        s = result.stats
        err_console.print(
            Text(
                f"{method}: {s.completion_tokens} tokens at {s.tokens_per_s:.1f} tok/s "
                f"({s.finish_reason}); {result.llm_calls} LLM call(s); model {result.model_id}; "
                f"prompt {result.prompt_version}"
            )
        )
    if cost is not None:
        err_console.print(
            Text(
                f"prompt: {cost['total']} tokens = {cost['descriptions']} item descriptions + "
                f"{cost['past_reviews']} past reviews + {cost['profile']} profile + "
                f"{cost['rest']} instructions, title and rating"
            )
        )
    held = result.target.held_out
    if held is not None:
        console.print()
        console.print(
            Text(f"Real review (held out), rated {held.rating:g}: {held.title}", style="bold")
        )
        console.print(Text(held.text))


def _prompt_cost(engine, result) -> dict[str, int] | None:
    """The generation prompt's tokens by part (None for a cancelled generation)."""
    from dpl_engine.method import generation

    if result.cancelled:
        return None
    return generation.prompt_cost(
        engine.generator,
        result.method,
        result.target,
        result.retrieved,
        result.profile,
        max_tokens=engine.generation_params().max_tokens,
        max_review_chars=engine.config.max_review_chars,
        preset=engine.preset,
    )


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("generate", epilog=GENERATE_EPILOG)(generate)
