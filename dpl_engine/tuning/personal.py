"""Per-user adapters: a small LoRA fitted on one user's own history, on top of a task adapter.

A task adapter (``dpl tune``) learns the method's prompts from many users. A per-user
adapter goes one step further: it is trained on the prompts of one user's own profile
reviews (latest first, never a validation or test review), over the base model with the
task adapter merged in, and llama.cpp later applies both (their updates add up, which is
exactly the model it was trained against).

Such an adapter is *kept only if it measures better*: after training, the user's
validation review is written with the task adapter alone and with both, for each of a few
seeds, and scored with ROUGE-1 against the real review. When the personal adapter does not
score higher on average, its file is removed and the verdict says so. Every verdict, kept
or not, is recorded beside the adapters (``verdicts.json``), so the same command twice
trains once, and ``dpl models`` can say how many users gained.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import mean
from typing import Any

from models.training import LoraOptions, StepReport

from ..engine import Engine
from ..errors import EngineError
from ..evaluation import metrics
from ..evaluation.split import Split
from ..method.cache import digest
from ..types import Cancelled, CancelToken, EngineConfig, Method
from .task import Example, tokenize, write_examples

PERSONAL_VERSION = "personal-1"

PERSONAL_LORA = LoraOptions(rank=4, alpha=8.0, epochs=2.0, learning_rate=1e-3)
"""A small adapter: a user has tens of reviews, not thousands. Not tuned yet."""

VERDICTS = "verdicts.json"


@dataclass(frozen=True)
class PersonalConfig:
    user_id: str
    method: Method = "dpl"
    examples: int = 12
    """At most this many of the user's profile reviews, latest first."""
    max_tokens: int = 2048
    min_completion: int = 32
    seeds: tuple[int, ...] = (1, 2)
    """Validation generations per adapter state: the verdict is their mean ROUGE-1."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    lora: LoraOptions = PERSONAL_LORA

    def check(self) -> None:
        if self.examples < 1:
            raise EngineError(f"--examples must be at least 1 (got {self.examples}).")
        if not self.seeds:
            raise EngineError("The validation needs at least one seed.")
        self.lora.check()


@dataclass(frozen=True)
class Verdict:
    user_id: str
    kept: bool
    task_rouge1: float
    """Mean ROUGE-1 of the validation review written with the task adapter alone."""
    personal_rouge1: float
    """The same with the per-user adapter on top."""
    seeds: tuple[int, ...]
    examples: int
    first_loss: float
    final_loss: float
    digest: str
    path: str
    """The adapter file; it exists only when ``kept``."""
    seconds: float = 0.0

    @property
    def gain(self) -> float:
        return self.personal_rouge1 - self.task_rouge1


def file_stem(user_id: str) -> str:
    """A file name for a user id (ids with other characters get a digest suffix)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", user_id)
    return safe if safe == user_id else f"{safe}-{digest(user_id)[:8]}"


def users_folder(task_path: str | Path) -> Path:
    """Where the per-user adapters on a task adapter live: beside it, ``NAME.users/``."""
    task_path = Path(task_path)
    return task_path.with_name(task_path.stem + ".users")


def read_verdicts(folder: Path) -> dict[str, Verdict]:
    path = folder / VERDICTS
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, Verdict] = {}
    for user_id, row in raw.items() if isinstance(raw, dict) else ():
        try:
            out[user_id] = Verdict(**{**row, "seeds": tuple(row["seeds"])})
        except (TypeError, KeyError):
            continue
    return out


def _write_verdict(folder: Path, verdict: Verdict) -> None:
    verdicts = read_verdicts(folder)
    verdicts[verdict.user_id] = verdict
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (VERDICTS + ".partial")
    tmp.write_text(json.dumps({u: asdict(v) for u, v in sorted(verdicts.items())}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, folder / VERDICTS)


def personal_path(task_path: str | Path, user_id: str) -> Path:
    return users_folder(task_path) / f"{file_stem(user_id)}.gguf"


def find_personal(task_path: str | Path, task_id: str, user_id: str) -> Path | None:
    """The kept per-user adapter of ``user_id`` on the task adapter at ``task_path`` (whose
    ``adapter_id`` is ``task_id``), or None. One trained on another version of the task
    adapter is ignored; one that cannot be read raises AdapterError."""
    path = personal_path(task_path, user_id)
    if not path.exists():
        return None
    from models.adapters import AdapterError, inspect_adapter
    from models.errors import ModelError

    try:
        info = inspect_adapter(path)
    except (ModelError, OSError) as err:
        raise AdapterError(
            f"{user_id!r}'s per-user adapter {str(path)!r} cannot be read ({err}). Train it "
            "again (`dpl tune --user USER --adapter TASK`) or leave it out with --no-personal."
        ) from err
    return path if info.meta.get("on") == task_id else None


def user_targets(split: Split, config: PersonalConfig) -> list[str]:
    """The user's profile items to train on, latest first, the earliest never (it has no
    history before it)."""
    user = split.user(config.user_id)
    if len(user.profile) < 2:
        raise EngineError(
            f"User {config.user_id!r} has {len(user.profile)} profile review(s) in this split; "
            "a per-user adapter needs at least two. Pick a user with a longer history."
        )
    return list(reversed(user.profile[1:]))[: config.examples]


def identity(config: PersonalConfig, split: Split, task: Any, reader_id: str) -> dict[str, Any]:
    return {
        "version": PERSONAL_VERSION,
        "user_id": config.user_id,
        "on": task.adapter_id,
        "reader_id": reader_id,
        "split": {"id": split.split_id, "fingerprint": split.fingerprint},
        "method": config.method,
        "examples": config.examples,
        "max_tokens": config.max_tokens,
        "min_completion": config.min_completion,
        "seeds": list(config.seeds),
        "engine": asdict(replace(config.engine, seed=0)),
        "seed": config.engine.seed,
        "lora": asdict(config.lora),
    }


Progress = Callable[[str, int, int, str], None]
"""(stage, done, total, detail): 'examples', 'load', 'export' or 'validate'."""


def train_personal(
    engine: Engine,
    split: Split,
    config: PersonalConfig,
    *,
    task_path: Path,
    base_path: Path,
    threads: int | None = None,
    on_progress: Progress | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Verdict, bool]:
    """Train, validate and keep or drop ``config.user_id``'s adapter; (verdict, trained).

    ``engine``'s generator is the base model *with the task adapter* (llama.cpp), its
    analyst what reads users for that adapter; the engine runs under the validation split's
    exclusions. ``trained`` is False when a verdict for this exact run already exists."""
    config.check()
    report = on_progress or (lambda *_: None)
    writer = engine.generator
    task = getattr(writer, "adapter", None)
    if task is None:
        raise EngineError("A per-user adapter goes on top of a task adapter: pass --adapter.")
    ident = identity(config, split, task, engine.analyst.model_id)
    key = digest(ident)
    folder = users_folder(task_path)
    out = personal_path(task_path, config.user_id)
    known = read_verdicts(folder).get(config.user_id)
    if known is not None and known.digest == key and (not known.kept or out.exists()):
        return known, False

    examples: list[Example] = []
    items = user_targets(split, config)
    for i, item_id in enumerate(items):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        real = engine.store.review(config.user_id, item_id)
        if real is not None and real.text.strip():
            target = engine.target(config.user_id, item_id, rating=real.rating,
                                   title=real.title)
            messages, _ = engine.prompt(target, config.method, cancel=cancel)
            tokens = tokenize(writer, messages, real.text, config.max_tokens,
                              config.min_completion)
            if tokens is not None:
                examples.append(Example(config.user_id, item_id, tuple(messages), real.text,
                                        tokens))
        report("examples", i + 1, len(items), item_id)
    if not examples:
        raise EngineError(
            f"None of {config.user_id!r}'s {len(items)} profile reviews fits in --max-tokens "
            f"{config.max_tokens}: raise it, or lower --k so prompts are shorter."
        )
    work = folder / f"{file_stem(config.user_id)}.work"
    write_examples(work / "examples.jsonl", examples)

    from models import training
    from models.adapters import read_adapter, write_adapter

    report("load", 0, 1, str(base_path))
    device = training.torch_device()
    model, shape = training.load_base(base_path, device, threads)
    modules = [name for name, _ in model.named_modules()]
    task_pairs = read_adapter(task.path, modules, architecture=shape.architecture,
                              block_count=shape.block_count, n_head=shape.n_head,
                              n_head_kv=shape.n_head_kv)
    training.merge_pairs(model, task_pairs, task.alpha)
    model = training.with_lora(model, config.lora)
    report("load", 1, 1, device)
    stop = (lambda: cancel.cancelled) if cancel is not None else None
    result = training.train(model, [e.tokens for e in examples], config.lora,
                            checkpoint=work / "checkpoint.pt", identity=key, on_step=on_step,
                            stop=stop)
    meta = {
        "name": f"{task.meta.get('name') or Path(task.path).stem}/{config.user_id}",
        "digest": key,
        "user_id": config.user_id,
        "on": task.adapter_id,
        "base_model_id": task.base_model_id,
        "reader_id": engine.analyst.model_id,
        "method": config.method,
        "split": ident["split"],
        "options": {**asdict(config.lora), "examples": config.examples},
        "examples": len(examples),
        **result.record(),
    }
    report("export", 0, 1, str(out))
    candidate = out.with_name(out.stem + ".candidate.gguf")
    write_adapter(candidate, result.pairs, alpha=config.lora.alpha,
                  architecture=shape.architecture, block_count=shape.block_count,
                  n_head=shape.n_head, n_head_kv=shape.n_head_kv, meta=meta)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    report("export", 1, 1, str(candidate))

    personal = writer.with_adapter(candidate)  # type: ignore[attr-defined]
    task_scores, personal_scores = validate(engine, split, config, personal, report, cancel)
    kept = mean(personal_scores) > mean(task_scores)
    if kept:
        os.replace(candidate, out)
    else:
        candidate.unlink(missing_ok=True)
        out.unlink(missing_ok=True)  # an earlier version's file must not outlive this verdict
    verdict = Verdict(
        user_id=config.user_id, kept=kept, task_rouge1=round(mean(task_scores), 4),
        personal_rouge1=round(mean(personal_scores), 4), seeds=config.seeds,
        examples=len(examples), first_loss=meta["first_loss"], final_loss=meta["final_loss"],
        digest=key, path=str(out), seconds=round(result.seconds, 1),
    )
    _write_verdict(folder, verdict)
    return verdict, True


def validate(
    engine: Engine,
    split: Split,
    config: PersonalConfig,
    personal: Any,
    report: Progress,
    cancel: CancelToken | None,
) -> tuple[list[float], list[float]]:
    """ROUGE-1 of the user's validation review written by the task adapter alone and with
    ``personal`` on top, one generation per seed each; the reading of the user is shared."""
    user = split.user(config.user_id)
    real = engine.store.review(config.user_id, user.val)
    if real is None or not real.text.strip():
        raise EngineError(
            f"User {config.user_id!r}'s validation review ({user.val!r}) has no text to "
            "measure against. Recompute the split with `dpl split`."
        )
    hidden = split.hidden_reviews("val")
    scores: dict[str, list[float]] = {"task": [], "personal": []}
    total = 2 * len(config.seeds)
    done = 0
    for seed in config.seeds:
        for label, writer in (("task", engine.generator), ("personal", personal)):
            run = Engine(engine.store, writer, lambda: engine.embedder,
                         replace(config.engine, seed=seed), exclude_reviews=hidden,
                         embedder_id=engine.embedder_id, analyst=engine.analyst)
            target = run.target(config.user_id, user.val, rating=real.rating, title=real.title)
            result = run.generate(target, config.method, cancel=cancel)
            if result.cancelled:
                raise Cancelled()
            scores[label].append(metrics.score_pair(result.text.strip(), real.text).rouge1)
            done += 1
            report("validate", done, total, f"{label}, seed {seed}")
    return scores["task"], scores["personal"]


def summary(verdicts: Sequence[Verdict]) -> str:
    kept = [v for v in verdicts if v.kept]
    if not verdicts:
        return "no per-user adapters"
    return f"{len(kept)} of {len(verdicts)} users kept"
