"""``dpl tune``: train a LoRA adapter for a GGUF base model on the evaluation split.

torch, transformers and peft are imported only once training starts, so
``dpl --help`` and every other command stay fast.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..common import (
    console,
    err_console,
    eta_progress,
    open_store,
    stop_on_terminate,
    user_errors,
)
from ..configs import EngineOptions, EvalRequest, SplitThresholds, eval_config, refuse_unused
from .builders import chosen_split
from .options import (
    AdapterOption,
    AnalysisTokensOption,
    DbOption,
    JsonOption,
    KOption,
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

TUNE_EPILOG = (
    "Examples are the training users' own profile reviews (never a validation or test review "
    "of anyone), each rendered with the prompt the method builds at generation time; the first "
    "--holdout-users users of dpl eval's order give none, so `dpl eval --users N --adapter NAME` "
    "with N up to that number tests on unseen users. The same command twice trains once; "
    "Ctrl-C keeps a checkpoint that the same command (or --resume) continues. See "
    "docs/readme/tune.md."
)


def tune(
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name to register the adapter under (default: task-METHOD)."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="Prompt to train on: dpl, profile, rag or none (default dpl; with --user, "
            "the task adapter's).",
        ),
    ] = None,
    model: ModelOption = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Model (registered name, server or GGUF) whose differences and profiles go "
            "into the training prompts (default: the base model itself).",
        ),
    ] = None,
    examples: Annotated[
        int | None,
        typer.Option(
            "--examples", help="At most this many training examples (default 120; 12 with --user)."
        ),
    ] = None,
    per_user: Annotated[
        int | None,
        typer.Option("--per-user", help="Targets per training user (they share calls; default 3)."),
    ] = None,
    holdout_users: Annotated[
        int | None,
        typer.Option(
            "--holdout-users", help="Users of dpl eval's order that give no example (default 40)."
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Prompt plus review tokens per example.")
    ] = 2048,
    rank: Annotated[
        int | None, typer.Option("--rank", help="LoRA rank (default 16; 4 with --user).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="LoRA alpha, the scale is alpha/rank (default 2 x rank)."),
    ] = None,
    targets: Annotated[
        str,
        typer.Option("--targets", help="Comma-separated projections to adapt."),
    ] = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    epochs: Annotated[
        float | None,
        typer.Option("--epochs", help="Passes over the examples (default 1; 2 with --user)."),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate, AdamW (default 3e-4; 1e-3 with --user)."),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", help="Examples per step (0: 1 on the CPU, 8 on a GPU).")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for KMeans, sampling, order.")] = 42,
    contrast: Annotated[
        float,
        typer.Option(
            "--contrast",
            help="Weight of the contrastive term: under a user's prompt, their own review "
            "must score above other users' reviews of the same item (0: off).",
        ),
    ] = 0.0,
    negatives: Annotated[
        int | None,
        typer.Option(
            "--negatives",
            help="With --contrast: other users' reviews of the item per example (default 1; "
            "each is one more pass in training).",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="Fit a per-user adapter for this user on top of the task adapter (--adapter); "
            "it is kept only if it writes the user's validation review better.",
        ),
    ] = None,
    adapter: AdapterOption = None,
    review_tokens: Annotated[
        int | None,
        typer.Option(
            "--review-tokens",
            help="With --user: longest validation review written, in tokens (default 128).",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run (fails if none).")
    ] = False,
    k: KOption = None,
    m: MOption = None,
    n: NOption = None,
    preset: PresetOption = None,
    analysis_max_tokens: AnalysisTokensOption = None,
    max_review_chars: ReviewCharsOption = None,
    min_chars: MinCharsOption = None,
    min_user_reviews: MinUserOption = None,
    max_user_reviews: MaxUserOption = None,
    min_item_reviewers: MinItemOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a LoRA adapter on difference-aware prompts, export it for llama.cpp, register it."""
    from dpl_engine.tuning.task import TuneConfig, check_adapter_name, train_adapter
    from models.training import LoraOptions
    from user_store import locations
    from user_store.config import Settings

    options = EngineOptions(
        k=k,
        m=m,
        n=n,
        preset=preset,
        analysis_max_tokens=analysis_max_tokens,
        max_review_chars=max_review_chars,
    )
    thresholds = SplitThresholds(
        min_chars=min_chars,
        min_user_reviews=min_user_reviews,
        max_user_reviews=max_user_reviews,
        min_item_reviewers=min_item_reviewers,
    )
    with user_errors():
        _refuse_ignored(
            user is not None,
            {
                "--name": name,
                "--method": method,
                "--teacher": teacher,
                "--per-user": per_user,
                "--holdout-users": holdout_users,
                "--resume": resume or None,
                "--contrast": contrast or None,
                "--negatives": negatives,
            },
            {"--adapter": adapter, "--review-tokens": review_tokens},
        )
        if not contrast:
            refuse_unused(["--negatives"] if negatives is not None else [], "with --contrast",
                          "add --contrast WEIGHT (for example --contrast 1)")
    if user is not None:
        _tune_user(
            user,
            adapter=adapter,
            model=model,
            examples=examples,
            rank=rank,
            alpha=alpha,
            targets=targets,
            epochs=epochs,
            lr=lr,
            batch=batch,
            seed=seed,
            max_tokens=max_tokens,
            options=options,
            thresholds=thresholds,
            db=db,
            as_json=as_json,
            review_tokens=128 if review_tokens is None else review_tokens,
        )
        return
    method = "dpl" if method is None else method
    per_user = 3 if per_user is None else per_user
    holdout_users = 40 if holdout_users is None else holdout_users
    examples = 120 if examples is None else examples
    rank = 16 if rank is None else rank
    with user_errors():
        name = f"task-{method}" if name is None else name
        check_adapter_name(name)  # it names the adapter's file: checked before any work
        settings = Settings.load()
        base_path = _base_path(settings, model)
        lora = LoraOptions(
            rank=rank,
            alpha=2.0 * rank if alpha is None else alpha,
            targets=tuple(t.strip() for t in targets.split(",") if t),
            epochs=1.0 if epochs is None else epochs,
            learning_rate=3e-4 if lr is None else lr,
            seed=seed,
            batch=batch,
            contrast=contrast,
        )
        with open_store(db) as store:
            chosen = chosen_split(store, thresholds)
            evaluation = eval_config(
                settings, EvalRequest(methods=method, seeds=(seed,), split="val", options=options)
            )
            config = TuneConfig(
                method=method,  # type: ignore[arg-type]
                examples=examples,
                per_user=per_user,
                holdout_users=holdout_users,
                max_tokens=max_tokens,
                negatives=1 if negatives is None else negatives,
                engine=replace(evaluation.engine, seed=seed),
                lora=lora,
            )
            config.check()
            if teacher is not None and Path(teacher).expanduser().is_file():
                teacher = str(Path(teacher).expanduser().resolve())  # found again from anywhere
            engine = _engine(store, chosen, config, base_path, teacher, settings)
            folder = locations.adapters_dir()
            started = time.perf_counter()
            try:
                with stop_on_terminate(), _TuneProgress() as progress:
                    result = train_adapter(
                        engine,
                        chosen,
                        config,
                        name=name,
                        base_path=base_path,
                        folder=folder,
                        teacher=teacher,
                        resume=resume,
                        on_progress=progress.stage,
                        on_step=progress.step,
                    )
            except KeyboardInterrupt:
                err_console.print(
                    Text(
                        f"Stopped after {time.perf_counter() - started:.0f} s. Differences and "
                        "profiles made so far are cached and training keeps its last checkpoint: "
                        "run the same command (or add --resume) to continue."
                    )
                )
                raise typer.Exit(130) from None
        settings = Settings.load()
        settings.adapters[name] = str(result.path)
        settings.save()
    meta = result.meta
    if as_json:
        import json

        typer.echo(
            json.dumps(
                {
                    "name": name,
                    "path": str(result.path),
                    "trained": result.trained,
                    "skipped": list(result.skipped),
                    "llm_calls": result.llm_calls,
                    "resumed_from": result.resumed_from,
                    **meta,
                },
                indent=2,
            )
        )
        return
    if not result.trained:
        console.print(
            Text(
                f"Adapter {name!r} with these options is already trained ({result.path}); nothing "
                f"to do. Final loss {meta.get('final_loss')}."
            )
        )
        return
    console.print(
        Text(
            f"Adapter {name!r}: {result.examples} examples from {meta['users']} users, "
            f"{meta['steps']} steps on {meta['device']} in {meta['seconds']:.0f} s; loss "
            f"{meta['first_loss']} -> {meta['final_loss']}. {result.llm_calls} LLM calls made for "
            f"the prompts, {len(result.skipped)} targets skipped.{_contrast_summary(result)} "
            f"Written to {result.path}.\n"
            f"Use it: dpl generate USER --adapter {name}   |   "
            f"dpl eval --split val --users {config.holdout_users} --adapter {name}"
        )
    )


def _contrast_summary(result) -> str:
    """What the contrastive term did, from the adapter's record; empty without one."""
    meta = result.meta
    if "first_contrast_loss" not in meta:
        return ""
    alone = meta.get("without_negatives", 0)
    missing = (f" {alone} examples had no other user's review of their item to contrast."
               if alone else "")
    return (
        f" Contrastive term {meta['first_contrast_loss']} -> {meta['final_contrast_loss']}; "
        f"the user's own review scored first in {meta['own_first_early']:.0%} of the first "
        f"examples and {meta['own_first_late']:.0%} of the last (each before it was learned)."
        + missing
    )


def _refuse_ignored(per_user: bool, task_only: dict, user_only: dict) -> None:
    """Raise for options given that this kind of run would ignore: a task adapter's name,
    method, teacher, example counts and resume mean nothing to a per-user run, and a per-user
    run's task adapter and review length nothing to a task run."""
    ignored = task_only if per_user else user_only
    given = [option for option, value in ignored.items() if value is not None]
    if per_user:
        refuse_unused(given, "without --user", "leave out --user to train a task adapter")
    else:
        refuse_unused(given, "with --user", "add --user USER to fit a per-user adapter")


def _tune_user(
    user_id: str,
    *,
    adapter,
    model,
    examples,
    rank,
    alpha,
    targets,
    epochs,
    lr,
    batch,
    seed,
    max_tokens,
    options: EngineOptions,
    thresholds: SplitThresholds,
    db,
    as_json,
    review_tokens,
) -> None:
    """``dpl tune --user``: a per-user adapter on top of the task adapter, kept only if the
    user's validation review comes out better with it."""
    from dpl_engine import Engine, EngineError
    from dpl_engine.tuning.personal import PERSONAL_LORA, PersonalConfig, train_personal
    from models.training import LoraOptions
    from user_store.config import Settings

    from ..loading import ModelPair, embedder_factory, embedder_id

    with user_errors():
        settings = Settings.load()
        base_path = _base_path(settings, model)
        pair = ModelPair(str(base_path), adapter, settings, personal=False)
        if pair.adapter_path is None:
            raise EngineError(
                "A per-user adapter goes on top of a task adapter: pass --adapter NAME (train "
                "one first with `dpl tune`)."
            )
        writer = pair.writer()
        task = writer.adapter  # type: ignore[attr-defined]
        recorded = task.meta.get("options", {})
        rank = PERSONAL_LORA.rank if rank is None else rank
        lora = LoraOptions(
            rank=rank,
            alpha=2.0 * rank if alpha is None else alpha,
            targets=tuple(t.strip() for t in targets.split(",") if t),
            epochs=PERSONAL_LORA.epochs if epochs is None else epochs,
            learning_rate=PERSONAL_LORA.learning_rate if lr is None else lr,
            seed=seed,
            batch=batch,
        )
        method = task.meta.get("method") or "dpl"
        with open_store(db) as store:
            chosen = chosen_split(store, thresholds)
            # The task adapter's own k, m, n and preset, unless given again.
            options = replace(
                options,
                k=recorded.get("k") if options.k is None else options.k,
                m=recorded.get("m") if options.m is None else options.m,
                n=recorded.get("n") if options.n is None else options.n,
                preset=options.preset or task.meta.get("preset"),
            )
            evaluation = eval_config(
                settings, EvalRequest(methods=method, seeds=(seed,), split="val", options=options)
            )
            config = PersonalConfig(
                user_id=user_id,
                method=method,
                examples=12 if examples is None else examples,
                max_tokens=max_tokens,
                engine=replace(
                    evaluation.engine,
                    seed=seed,
                    generation=replace(evaluation.engine.generation, max_tokens=review_tokens),
                ),
                lora=lora,
            )
            config.check()
            if review_tokens < 1:
                raise EngineError(f"--review-tokens must be at least 1 (got {review_tokens}).")
            chosen.user(user_id)  # not in the split: named before any work
            engine = Engine(
                store,
                writer,
                embedder_factory(settings, None),
                config.engine,
                exclude_reviews=chosen.hidden_reviews("val"),
                embedder_id=embedder_id(settings, None),
                analyst=pair.analyst_factory,
            )
            started = time.perf_counter()
            try:
                with stop_on_terminate(), _TuneProgress() as progress:
                    verdict, trained = train_personal(
                        engine,
                        chosen,
                        config,
                        task_path=Path(pair.adapter_path),
                        base_path=base_path,
                        on_progress=progress.stage,
                        on_step=progress.step,
                    )
            except KeyboardInterrupt:
                err_console.print(
                    Text(
                        f"Stopped after {time.perf_counter() - started:.0f} s; run the same "
                        "command to continue from the last checkpoint."
                    )
                )
                raise typer.Exit(130) from None
    if as_json:
        import json
        from dataclasses import asdict

        typer.echo(
            json.dumps({**asdict(verdict), "trained": trained, "on": task.adapter_id}, indent=2)
        )
        return
    how = "" if trained else " (already measured with these options; nothing trained)"
    scores = (
        f"ROUGE-1 on the validation review {verdict.task_rouge1:.4f} with the task adapter "
        f"alone, {verdict.personal_rouge1:.4f} with the user's own on top (seeds "
        f"{', '.join(map(str, verdict.seeds))})"
    )
    if verdict.kept:
        console.print(
            Text(
                f"Per-user adapter for {user_id} kept{how}: {scores}. It is applied whenever "
                f"{user_id}'s reviews are written with --adapter "
                f"{adapter or task.meta.get('name')} (--no-personal leaves it out). {verdict.path}"
            )
        )
    else:
        console.print(
            Text(
                f"Per-user adapter for {user_id} not kept{how}: {scores}; the task adapter alone "
                "stays in use for this user."
            )
        )


def _base_path(settings, model: str | None) -> Path:
    """The GGUF file to train on: a server cannot be trained here."""
    from ..loading import local_gguf

    return local_gguf(
        settings,
        model,
        "dpl tune trains a GGUF base model on this machine. "
        "Pass the GGUF with --model, and the server as --teacher if it should "
        "read users.",
    )


def _engine(store, chosen, config, base_path, teacher, settings):  # -> Engine
    from dpl_engine import Engine

    from ..loading import embedder_factory, embedder_id, load_generator

    hidden = chosen.hidden_reviews("val")
    student = load_generator(str(base_path), settings)
    analyst = None
    if teacher is not None:
        analyst = load_generator(teacher, settings)
        if analyst.model_id == student.model_id:
            analyst = None  # the base model is its own teacher
    return Engine(
        store,
        student,
        embedder_factory(settings, None),
        config.engine,
        exclude_reviews=hidden,
        embedder_id=embedder_id(settings, None),
        analyst=analyst,
    )


class _TuneProgress:
    """Examples, then training steps, as one progress bar on stderr with loss and ETA."""

    def __init__(self) -> None:
        self.progress = eta_progress("tune")
        self.task = None
        self.stage_name = ""

    def __enter__(self) -> _TuneProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def stage(self, stage: str, done: int, total: int, detail: str) -> None:
        labels = {
            "examples": "building examples",
            "load": "loading the base model",
            "export": "writing the adapter",
        }
        if stage != self.stage_name:
            self.stage_name = stage
            if self.task is not None:
                self.progress.update(self.task, visible=False)
            self.task = self.progress.add_task(
                labels.get(stage, stage), total=total or None, note=""
            )
        self.progress.update(
            self.task,
            completed=done,
            total=total or None,
            note=f"{labels.get(stage, stage)}: {detail}",
        )

    def step(self, report) -> None:  # report: models.training.StepReport
        if self.stage_name != "train":
            self.stage("train", 0, report.total, "")
        self.progress.update(
            self.task,
            completed=report.step,
            total=report.total,
            note=f"training: loss {report.loss:.3f}"
            + (f", contrast {report.contrast:.3f}" if report.contrast is not None else "")
            + f", {report.examples_per_s:.2f} examples/s, {report.tokens_per_s:.0f} tokens/s",
        )


def register(app: typer.Typer) -> None:
    app.command("tune", epilog=TUNE_EPILOG)(tune)


__all__ = ["register"]
