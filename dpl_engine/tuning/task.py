"""``dpl tune``: a LoRA adapter trained on the prompts the method itself builds.

Examples come from the evaluation split. The first ``holdout_users`` users of the
evaluation's fixed order are left out entirely (``dpl eval --users N`` with N up to
that number then tests on users the adapter never saw); each other user gives up to
``per_user`` of their own *profile* reviews as targets, latest first. Targets are
never a validation or test review, and the engine runs under the validation split's
exclusions, so no validation or test review of anyone appears in a prompt either.

Each example is the review prompt that ``Engine.prompt`` builds for the target
(item, retrieved past reviews, difference-aware profile, rating and title) and the
real review as the completion. The differences and profiles in those prompts come
from the *teacher* (``Engine``'s analyst): a stronger model when one is given, else
the base model itself. They are cached in the store as usual, and a user's
differences are cached per comparison set, so a user's several targets share most of
their calls. The trained adapter reads users through the same teacher when it is
used (``Adapter.teacher``), so it is served the kind of prompt it learned from.

With a contrastive weight (``LoraOptions.contrast``), each example also carries up to
``negatives`` reviews of the same item by other training users (their profile reviews
only, never a held-out user's): the adapter then learns that, under this user's prompt,
their own review should score above what the others wrote of the same item. This is the
method's own idea, differences between users on shared items, turned into a training
signal.

The run's identity (base model, split, method, settings, teacher, examples and
training options) is a digest: the same command twice trains once, and an
interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models import ChatMessage
from models.training import LoraOptions, StepReport, TrainingExample

from ..engine import Engine
from ..errors import EngineError
from ..evaluation.runner import USER_ORDER_SEED
from ..evaluation.split import Split, params_dict
from ..method.cache import digest
from ..types import METHODS, Cancelled, CancelToken, EngineConfig, Method

TUNE_VERSION = "tune-1"
"""Changes when the way examples are chosen or rendered changes."""

MAX_NEGATIVES = 8


@dataclass(frozen=True)
class TuneConfig:
    method: Method = "dpl"
    examples: int = 120
    """At most this many examples (targets), spread over the training users."""
    per_user: int = 3
    """Targets per training user, latest profile review first: a user's targets share their
    comparison sets, so several per user cost far less than one each for more users."""
    holdout_users: int = 40
    """The first N users of the evaluation's fixed order never give an example."""
    max_tokens: int = 2048
    """Prompt plus completion tokens per example; the completion is cut to fit, and a
    prompt that leaves fewer than ``min_completion`` tokens is skipped."""
    min_completion: int = 32
    negatives: int = 1
    """Other users' reviews of the target item per example, with ``lora.contrast`` above 0
    (each costs one more pass over prompt and review in training)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    lora: LoraOptions = field(default_factory=LoraOptions)

    def check(self) -> None:
        if self.method not in METHODS:
            raise EngineError(f"Unknown method {self.method!r}: choose one of "
                              f"{', '.join(METHODS)}.")
        for name, value, least in (
            ("--examples", self.examples, 1),
            ("--per-user", self.per_user, 1),
            ("--holdout-users", self.holdout_users, 0),
            ("--max-tokens", self.max_tokens, self.min_completion + 16),
            ("--negatives", self.negatives, 1),
        ):
            if value < least:
                raise EngineError(f"{name} must be at least {least} (got {value}).")
        if self.negatives > MAX_NEGATIVES:
            raise EngineError(f"--negatives must be at most {MAX_NEGATIVES} (got "
                              f"{self.negatives}): each one is another pass per example.")
        self.lora.check()

    @property
    def contrastive(self) -> bool:
        return self.lora.contrast > 0


@dataclass(frozen=True)
class Example:
    """One training example, in text and in the student's tokens."""

    user_id: str
    item_id: str
    messages: tuple[ChatMessage, ...]
    completion: str
    tokens: TrainingExample
    negatives: tuple[tuple[str, str], ...] = ()
    """(user_id, review text) of the other users' reviews in ``tokens.negatives``."""


@dataclass(frozen=True)
class ExampleSet:
    examples: tuple[Example, ...]
    skipped: tuple[str, ...]
    """Why targets were left out (prompt too long, no text)."""
    llm_calls: int
    users: int
    without_negatives: int = 0
    """Examples whose item no other training user reviewed (with a contrastive weight)."""


def held_out_users(split: Split, count: int) -> list[str]:
    """The first ``count`` users of the evaluation's fixed order (``dpl eval --users``)."""
    order = sorted(u.user_id for u in split.users)
    random.Random(USER_ORDER_SEED).shuffle(order)
    return order[:count]


def training_targets(split: Split, config: TuneConfig) -> list[tuple[str, str]]:
    """(user, item) targets: profile reviews of the users outside the held-out ones."""
    held = set(held_out_users(split, config.holdout_users))
    users = [u for u in split.users if u.user_id not in held and len(u.profile) >= 2]
    rng = random.Random(config.lora.seed)
    rng.shuffle(users)
    targets: list[tuple[str, str]] = []
    for user in users:
        # the earliest profile review has no history before it worth learning from
        for item in list(reversed(user.profile))[: config.per_user]:
            if item == user.profile[0]:
                break
            targets.append((user.user_id, item))
            if len(targets) >= config.examples:
                return targets
    return targets


def negative_pool(split: Split, config: TuneConfig) -> dict[str, tuple[str, ...]]:
    """item -> the training users (outside the held-out ones) with a profile review of it."""
    held = set(held_out_users(split, config.holdout_users))
    pool: dict[str, list[str]] = {}
    for user in split.users:
        if user.user_id not in held:
            for item in user.profile:
                pool.setdefault(item, []).append(user.user_id)
    return {item: tuple(users) for item, users in pool.items()}


def pick_negatives(pool: dict[str, tuple[str, ...]], user_id: str, item_id: str,
                   count: int, seed: int) -> list[str]:
    """Up to ``count`` other users of ``pool[item_id]``, the same for the same seed."""
    others = [u for u in pool.get(item_id, ()) if u != user_id]
    random.Random(f"{seed}:{user_id}:{item_id}").shuffle(others)
    return others[:count]


def tokenize(student: Any, messages: Sequence[ChatMessage], completion: str,
             max_tokens: int, min_completion: int,
             negatives: Sequence[str] = ()) -> TrainingExample | None:
    """The example in the student's own tokens (llama.cpp's chat template), the completion
    (and each negative) cut to fit ``max_tokens``; None when the prompt leaves too little
    room."""
    prompt = student.prompt_token_ids(messages)
    room = max_tokens - len(prompt)
    if room < min_completion:
        return None

    def body(text: str) -> tuple[int, ...]:
        return tuple(student.text_token_ids(text.strip())[: room - 1]) + (
            student.end_of_turn_id,)

    return TrainingExample(tuple(prompt), body(completion),
                           tuple(body(text) for text in negatives))


def build_examples(
    engine: Engine,
    split: Split,
    config: TuneConfig,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> ExampleSet:
    """Render every training target's prompt with ``engine`` (its generator is the student's
    base model, its analyst the teacher) and tokenize it for the student."""
    targets = training_targets(split, config)
    if not targets:
        raise EngineError(
            f"The split ({split.params.describe()}) leaves no training examples: it has "
            f"{len(split.users)} users, the first {config.holdout_users} are held out, and the "
            "rest need at least two profile reviews. Lower --holdout-users or relax the split "
            "(`dpl split` suggests thresholds)."
        )
    pool = negative_pool(split, config) if config.contrastive else {}
    examples: list[Example] = []
    skipped: list[str] = []
    calls = 0
    for i, (user_id, item_id) in enumerate(targets):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        real = engine.store.review(user_id, item_id)
        if real is None or not real.text.strip():
            skipped.append(f"{user_id}/{item_id}: no review text")
            continue
        target = engine.target(user_id, item_id, rating=real.rating, title=real.title)
        messages, made = engine.prompt(target, config.method, cancel=cancel)
        calls += made
        negatives = []
        for other in pick_negatives(pool, user_id, item_id, config.negatives,
                                    config.lora.seed):
            review = engine.store.review(other, item_id)
            if review is not None and review.text.strip():
                negatives.append((other, review.text))
        tokens = tokenize(engine.generator, messages, real.text, config.max_tokens,
                          config.min_completion, [text for _, text in negatives])
        if tokens is None:
            skipped.append(f"{user_id}/{item_id}: prompt longer than --max-tokens")
        else:
            examples.append(Example(user_id, item_id, tuple(messages), real.text, tokens,
                                    tuple(negatives)))
        if progress is not None:
            progress(i + 1, len(targets), user_id)
    if not examples:
        raise EngineError(
            f"None of the {len(targets)} training targets fits in --max-tokens "
            f"{config.max_tokens}: raise it, or lower --k so prompts are shorter."
        )
    return ExampleSet(tuple(examples), tuple(skipped), calls,
                      len({e.user_id for e in examples}),
                      sum(1 for e in examples if not e.negatives) if config.contrastive else 0)


def identity(
    config: TuneConfig,
    split: Split,
    base_model_id: str,
    teacher_id: str,
) -> dict[str, Any]:
    """What makes the adapter what it is; its digest names the run."""
    engine = asdict(replace(config.engine, seed=0))
    lora = asdict(config.lora)
    if not config.contrastive:
        del lora["contrast"]  # so adapters trained before the option keep their identity
    value: dict[str, Any] = {
        "version": TUNE_VERSION,
        "base_model_id": base_model_id,
        "teacher_id": teacher_id,
        "split": {"id": split.split_id, "fingerprint": split.fingerprint,
                  "params": params_dict(split.params)},
        "method": config.method,
        "examples": config.examples,
        "per_user": config.per_user,
        "holdout_users": config.holdout_users,
        "max_tokens": config.max_tokens,
        "min_completion": config.min_completion,
        "engine": engine,
        "seed": config.engine.seed,
        "lora": lora,
    }
    if config.contrastive:
        value["negatives"] = config.negatives
    return value


def write_examples(path: Path, examples: Sequence[Example]) -> None:
    """The examples as JSON lines, to read what the adapter learned from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as fh:
        for e in examples:
            fh.write(json.dumps({"user_id": e.user_id, "item_id": e.item_id,
                                 "messages": list(e.messages), "completion": e.completion,
                                 "prompt_tokens": len(e.tokens.prompt_ids),
                                 "completion_tokens": len(e.tokens.completion_ids),
                                 **({"negatives": [{"user_id": u, "text": t}
                                                   for u, t in e.negatives]}
                                    if e.negatives else {})},
                                ensure_ascii=False) + "\n")
    tmp.replace(path)


@dataclass(frozen=True)
class TuneResult:
    path: Path
    """The adapter GGUF."""
    trained: bool
    """False when an adapter of the same identity was already there (nothing was trained)."""
    meta: dict[str, Any]
    """What the adapter file records of its making (``models.adapters.META_KEY``)."""
    examples: int = 0
    skipped: tuple[str, ...] = ()
    llm_calls: int = 0
    resumed_from: int = 0


Progress = Callable[[str, int, int, str], None]
"""(stage, done, total, detail): stage 'examples', 'load', or 'export'."""


ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An adapter's name: also its file's name in the adapters folder, so no slashes."""


def check_adapter_name(name: str) -> None:
    """Raise for a name that cannot be both a registered name and a file name."""
    if not ADAPTER_NAME.fullmatch(name):
        raise EngineError(
            f"Adapter name {name!r} cannot be used: give up to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (for example --name task-dpl)."
        )


def train_adapter(
    engine: Engine,
    split: Split,
    config: TuneConfig,
    *,
    name: str,
    base_path: Path,
    folder: Path,
    teacher: str | None = None,
    resume: bool = False,
    threads: int | None = None,
    on_progress: Progress | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    cancel: CancelToken | None = None,
) -> TuneResult:
    """Build the examples, train, export ``folder/<name>.gguf``; skip all of it when the
    file there already has this run's identity.

    ``engine``'s generator is the student's base model loaded in llama.cpp (its tokenizer
    and chat template render the examples); its analyst, when set, is the teacher, and
    ``teacher`` the choice that loads it again (a registered name or a path), kept in the
    adapter. Ctrl-C (or ``cancel``) while training keeps a checkpoint in
    ``folder/<name>.work`` and raises KeyboardInterrupt; ``resume`` insists on one."""
    from models.adapters import AdapterError, inspect_adapter, write_adapter

    config.check()
    check_adapter_name(name)
    report = on_progress or (lambda *_: None)
    student = engine.generator
    teacher_id = engine.analyst.model_id if engine.has_analyst else student.model_id
    ident = identity(config, split, student.model_id, teacher_id)
    key = digest(ident)
    out = folder / f"{name}.gguf"
    work = folder / f"{name}.work"
    checkpoint = work / "checkpoint.pt"
    if out.exists():
        try:
            existing = inspect_adapter(out)
        except (AdapterError, OSError, ValueError):
            existing = None
        if existing is not None and existing.meta.get("digest") == key:
            return TuneResult(out, False, existing.meta, int(existing.meta.get("examples", 0)))
    if resume and not checkpoint.exists():
        raise EngineError(
            f"There is no interrupted run of adapter {name!r} with these options to resume "
            f"({str(checkpoint)!r} is missing). Run the same command without --resume."
        )

    def examples_progress(done: int, total: int, user: str) -> None:
        report("examples", done, total, user)

    found = build_examples(engine, split, config, progress=examples_progress, cancel=cancel)
    write_examples(work / "examples.jsonl", found.examples)

    from models import training

    report("load", 0, 1, str(base_path))
    device = training.torch_device()
    model, shape = training.load_base(base_path, device, threads)
    model = training.with_lora(model, config.lora)
    report("load", 1, 1, device)
    stop = (lambda: cancel.cancelled) if cancel is not None else None
    result = training.train(
        model, [e.tokens for e in found.examples], config.lora,
        checkpoint=checkpoint, identity=key, on_step=on_step, stop=stop,
    )
    meta = {
        "name": name,
        "digest": key,
        "base_model_id": student.model_id,
        "teacher_id": teacher_id,
        "teacher": teacher or "",
        "method": config.method,
        "preset": config.engine.preset,
        "split": ident["split"],
        "options": {**asdict(config.lora), "examples": config.examples,
                    "per_user": config.per_user, "holdout_users": config.holdout_users,
                    "max_tokens": config.max_tokens,
                    **({"negatives": config.negatives} if config.contrastive else {}),
                    "k": config.engine.k,
                    "m": config.engine.m, "n": config.engine.n, "seed": config.engine.seed},
        "examples": len(found.examples),
        "users": found.users,
        **({"without_negatives": found.without_negatives} if config.contrastive else {}),
        **result.record(),
    }
    report("export", 0, 1, str(out))
    write_adapter(out, result.pairs, alpha=config.lora.alpha, architecture=shape.architecture,
                  block_count=shape.block_count, n_head=shape.n_head,
                  n_head_kv=shape.n_head_kv, meta=meta)
    checkpoint.unlink(missing_ok=True)
    report("export", 1, 1, str(out))
    return TuneResult(out, True, meta, len(found.examples), found.skipped, found.llm_calls,
                      result.resumed_from)
