"""Training a LoRA adapter on a GGUF base model: PEFT over transformers, a plain loop.

transformers reads the GGUF itself (dequantized, with its tokenizer and chat
template), so the model trained is the model llama.cpp serves. Examples arrive as
token ids already rendered by llama.cpp's own chat template (``TrainingExample``),
so the prompts trained on are, token for token, the prompts served. The loss covers
the completion only; with a contrastive weight, each example's completion must also
score above other users' reviews of the same item under the same prompt. A
checkpoint (the LoRA weights, the optimizer and the position in the run) is written
every few steps and when the run is interrupted, and a run with the same identity
resumes from it. The trained pairs are exported with
``models.adapters.write_adapter``.

torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainingError(ModelError):
    """Training cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class TrainingExample:
    prompt_ids: tuple[int, ...]
    """The prompt as llama.cpp tokenizes it under the model's chat template."""
    completion_ids: tuple[int, ...]
    """The text to learn, ending with the end-of-turn token; the loss covers only these."""
    negatives: tuple[tuple[int, ...], ...] = ()
    """Other users' reviews of the same item, in the form of ``completion_ids``: under this
    prompt they should score below the completion (``LoraOptions.contrast``)."""


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_TARGETS
    """Projection names PEFT adapts (transformers' module names)."""
    epochs: float = 1.0
    """Passes over the examples; a fraction stops part-way through the last one."""
    learning_rate: float = 3e-4
    warmup: float = 0.1
    """Share of the steps with a linearly rising learning rate; it then falls linearly to 0."""
    seed: int = 0
    batch: int = 0
    """Examples per step, padded to the longest; 0 chooses by device: 1 on the CPU (padding
    only costs there), 8 on a GPU (one example leaves it idle between kernel launches)."""
    checkpoint_every: int = 20
    """Steps between checkpoints (and one more when the run is interrupted)."""
    contrast: float = 0.0
    """Weight of the contrastive term (0: none). Each example's completion and its negatives
    are scored by their mean token log-likelihood under the example's prompt; the term is the
    cross-entropy of picking the completion among them (a softmax over the scores), so the
    adapter learns to write what this user wrote rather than what anyone would."""

    def check(self) -> None:
        problems = [
            (self.rank < 1, f"--rank must be at least 1 (got {self.rank})"),
            (self.alpha <= 0, f"--alpha must be above 0 (got {self.alpha})"),
            (not 0 <= self.dropout < 1, f"--dropout must be in [0, 1) (got {self.dropout})"),
            (not self.targets, "--targets needs at least one module name, e.g. q_proj,v_proj"),
            (self.epochs <= 0, f"--epochs must be above 0 (got {self.epochs})"),
            (self.learning_rate <= 0, f"--lr must be above 0 (got {self.learning_rate})"),
            (not 0 <= self.warmup < 1, f"warmup must be in [0, 1) (got {self.warmup})"),
            (self.checkpoint_every < 1, "checkpoint_every must be at least 1"),
            (self.batch < 0, f"--batch must be 0 (by device) or more (got {self.batch})"),
            (not 0 <= self.contrast <= 100,
             f"--contrast must be between 0 (off) and 100 (got {self.contrast})"),
        ]
        for bad, message in problems:
            if bad:
                raise TrainingError(message + ".")


@dataclass(frozen=True)
class StepReport:
    step: int
    total: int
    loss: float
    """Mean loss per completion token over the last few steps."""
    examples_per_s: float
    tokens_per_s: float
    seconds_left: float
    contrast: float | None = None
    """Mean contrastive term over the last few steps that had one (None: no such step)."""


@dataclass
class TrainResult:
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    """transformers module path -> (A, B) in PEFT's layout, float32."""
    steps: int
    first_loss: float
    """Mean loss over the first steps (up to 10), before training could change much."""
    final_loss: float
    """Mean loss over the last steps (up to 10)."""
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    resumed_from: int = 0
    """The step a checkpoint let the run start from (0: from the beginning)."""
    peak_memory_bytes: int = 0
    contrast_losses: list[float] = field(default_factory=list)
    """The contrastive term of each step that had negatives (none without ``contrast``)."""
    own_first: list[bool] = field(default_factory=list)
    """Per example with negatives, in order: whether its completion scored above all of them,
    measured before that step's update (so, in a single pass, on an example not yet seen)."""

    def record(self) -> dict[str, Any]:
        """What an adapter file keeps of the run that made it."""
        record: dict[str, Any] = {
            "steps": self.steps,
            "tokens": self.tokens,
            "first_loss": round(self.first_loss, 4),
            "final_loss": round(self.final_loss, 4),
            "device": self.device,
            "seconds": round(self.seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if self.contrast_losses:
            record |= {
                "first_contrast_loss": round(float(np.mean(self.contrast_losses[:10])), 4),
                "final_contrast_loss": round(float(np.mean(self.contrast_losses[-10:])), 4),
                "own_first_early": round(float(np.mean(self.own_first[:WINDOW])), 3),
                "own_first_late": round(float(np.mean(self.own_first[-WINDOW:])), 3),
            }
        return record


WINDOW = 20
"""Examples over which ``TrainResult.record`` reports the share ranked first, early and late."""


@dataclass(frozen=True)
class BaseShape:
    """What the export needs to know of the base model."""

    architecture: str
    block_count: int
    n_head: int
    n_head_kv: int


def torch_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(gguf_path: Path, device: str, threads: int | None = None) -> tuple[Any, BaseShape]:
    """The GGUF as a transformers causal LM (dequantized to float32 on the CPU, bfloat16 on a
    GPU), and its shape for the export."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # dpl shows its own progress
    hf_logging.set_verbosity_error()
    _quiet_gguf_reader()
    if threads:
        torch.set_num_threads(threads)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=dtype
        )
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        raise TrainingError(
            f"transformers could not load {str(gguf_path)!r} for training ({err}). Training "
            "needs a GGUF whose architecture transformers can read (llama, qwen2, mistral, ...)."
        ) from err
    cfg = model.config
    arch = getattr(cfg, "model_type", "")
    shape = BaseShape(
        architecture="llama" if arch in ("llama", "mistral") else arch,
        block_count=int(cfg.num_hidden_layers),
        n_head=int(cfg.num_attention_heads),
        n_head_kv=int(getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)),
    )
    return model.to(device), shape


def _quiet_gguf_reader() -> None:
    """transformers' GGUF reader draws its own tqdm bar, outside its progress-bar switch."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as reader

    bar = getattr(reader, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        reader.tqdm = functools.partial(bar, disable=True)


def with_lora(model: Any, options: LoraOptions, *, random_b: bool = False) -> Any:
    """``model`` wrapped by PEFT with a LoRA on ``options.targets``.

    ``random_b`` starts B random instead of zero (for export checks: an untrained adapter
    then changes the output)."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in options.targets if t not in names]
    if missing:
        raise TrainingError(
            f"The base model has no module named {missing[0]!r}; choose --targets from "
            f"{', '.join(t for t in DEFAULT_TARGETS if t in names)}."
        )
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.targets),
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=not random_b,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes
        return get_peft_model(model, config)


def merge_pairs(model: Any, pairs: dict[str, tuple[np.ndarray, np.ndarray]],
                alpha: float) -> None:
    """Add an adapter's update, alpha / rank x B @ A, to the base weights in place.

    A second adapter trained over the result learns on top of the first; llama.cpp applies
    both to the unmerged base and adds their updates, which is the same model."""
    import torch

    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (a, b) in pairs.items():
            module = modules.get(name)
            if module is None or not hasattr(module, "weight"):
                raise TrainingError(f"The base model has no weight {name!r} to merge into.")
            weight = module.weight
            delta = torch.from_numpy(b.astype(np.float32)) @ torch.from_numpy(a.astype(np.float32))
            weight += (float(alpha) / a.shape[0]) * delta.to(weight.device, weight.dtype)


def lora_pairs(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The PEFT model's LoRA weights by transformers module path, as float32 arrays."""
    a_parts: dict[str, np.ndarray] = {}
    b_parts: dict[str, np.ndarray] = {}
    for name, param in model.named_parameters():
        for marker, parts in ((".lora_A.", a_parts), (".lora_B.", b_parts)):
            if marker in name:
                module = name.split(marker)[0]
                module = module.removeprefix("base_model.model.")
                parts[module] = param.detach().float().cpu().numpy()
    return {m: (a_parts[m], b_parts[m]) for m in sorted(a_parts) if m in b_parts}


def _schedule(step: int, total: int, warmup: float) -> float:
    ramp = max(1, int(total * warmup))
    if step < ramp:
        return (step + 1) / ramp
    return max(0.0, (total - step) / max(1, total - ramp))


def _order(n: int, epochs: float, seed: int, batch: int = 1) -> list[list[int]]:
    """Example indices for the whole run, ``batch`` per step: each epoch a fresh shuffle."""
    rng = random.Random(seed)
    count = max(1, math.ceil(n * epochs))
    order: list[int] = []
    while len(order) < count:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    order = order[:count]
    return [order[i : i + batch] for i in range(0, count, batch)]


def batch_size(options: LoraOptions, device: str) -> int:
    return options.batch or (8 if device == "cuda" else 1)


def _tensors(batch: Sequence[TrainingExample], device: Any) -> tuple[Any, Any, Any, int]:
    """Input ids, attention mask and labels padded to the longest example; labels cover the
    completions only. Also the number of real tokens."""
    import torch

    longest = max(len(e.prompt_ids) + len(e.completion_ids) for e in batch)
    ids = torch.zeros((len(batch), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    real = 0
    for row, e in enumerate(batch):
        seq = list(e.prompt_ids) + list(e.completion_ids)
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, len(e.prompt_ids) : len(seq)] = torch.tensor(list(e.completion_ids))
        real += len(seq)
    return ids.to(device), mask.to(device), labels.to(device), real


def _rows(batch: Sequence[TrainingExample]) -> tuple[list[TrainingExample], list[list[int]]]:
    """Every example's completion and each of its negatives as a sequence of its own (under
    the example's prompt), and per example the indices of its sequences, completion first."""
    rows: list[TrainingExample] = []
    groups: list[list[int]] = []
    for e in batch:
        groups.append([len(rows)])
        rows.append(TrainingExample(e.prompt_ids, e.completion_ids))
        for negative in e.negatives:
            groups[-1].append(len(rows))
            rows.append(TrainingExample(e.prompt_ids, negative))
    return rows, groups


def _row_nll(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, Any]:
    """Per row: the summed negative log-likelihood of its labelled tokens, and their count."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                          ignore_index=-100, reduction="none").view(targets.shape)
    return nll.sum(dim=1), (targets != -100).sum(dim=1).clamp(min=1)


def completion_scores(model: Any, example: TrainingExample) -> list[float]:
    """Mean token log-likelihood of the completion, then of each negative, under the
    example's prompt: the scores the contrastive term compares."""
    import torch

    device = next(model.parameters()).device
    ids, mask, labels, _ = _tensors(_rows([example])[0], device)
    with torch.no_grad():
        sums, counts = _row_nll(model, ids, mask, labels)
    return [float(x) for x in (-sums / counts).cpu()]


@dataclass(frozen=True)
class ContrastiveStep:
    lm_loss: float
    """The usual loss: mean negative log-likelihood per completion token of the step."""
    contrast: float
    """The contrastive term, averaged over the step's examples that have negatives."""
    own_first: list[bool]
    """Per example with negatives: whether its completion scored above all of them."""
    tokens: int


def _rng_state(device: Any) -> tuple[Any, Any]:
    import torch

    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: Any, state: tuple[Any, Any]) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _contrastive_step(model: Any, batch: Sequence[TrainingExample], weight: float,
                      device: Any, precision: Callable[[], Any]) -> ContrastiveStep:
    """Accumulate into the gradients the step's loss: the usual loss over the completions
    plus ``weight`` times the contrastive term (per example with negatives, the cross-entropy
    of its completion among them, scored by mean token log-likelihood; averaged).

    One sequence (an example's completion or one negative, under its prompt) is in the graph
    at a time, so memory stays that of plain training however many negatives there are. A
    first pass without gradients scores every sequence; the loss's derivative with respect to
    each sequence's summed log-likelihood then follows in closed form, and a second pass runs
    each sequence again, with the same dropout draws, and back-propagates it times that
    derivative. The gradients are those of the whole loss in one graph. ``precision`` gives
    the context each forward pass runs in (autocast on a GPU)."""
    import torch

    rows, groups = _rows(batch)
    states, sums, counts = [], [], []
    real = 0
    with torch.no_grad():
        for row in rows:
            states.append(_rng_state(device))
            ids, mask, labels, n = _tensors([row], device)
            with precision():
                total, count = _row_nll(model, ids, mask, labels)
            sums.append(float(total[0]))
            counts.append(int(count[0]))
            real += n
    pos_tokens = sum(counts[g[0]] for g in groups)
    # d(loss)/d(summed negative log-likelihood of each row)
    coefficient = [0.0] * len(rows)
    for g in groups:
        coefficient[g[0]] += 1.0 / pos_tokens
    contrasted = [g for g in groups if len(g) > 1]
    terms, own_first = [], []
    for g in contrasted:
        scores = np.array([-sums[r] / counts[r] for r in g])
        shifted = np.exp(scores - scores.max())
        chosen = shifted / shifted.sum()
        terms.append(float(-np.log(chosen[0])))
        own_first.append(bool(scores[0] > scores[1:].max()))
        # term = -log softmax(scores)[0]: d/d score_j = chosen_j - [j is the completion],
        # and score_j = -sum_j / count_j
        for j, r in enumerate(g):
            d_score = weight * (chosen[j] - (j == 0)) / len(contrasted)
            coefficient[r] -= d_score / counts[r]
    resume = _rng_state(device)
    for row, state, c in zip(rows, states, coefficient, strict=True):
        if c == 0.0:
            continue
        _set_rng_state(device, state)  # the dropout draws of the scoring pass
        ids, mask, labels, _ = _tensors([row], device)
        with precision():
            total, _ = _row_nll(model, ids, mask, labels)
        (total[0] * c).backward()
    _set_rng_state(device, resume)
    lm = sum(sums[g[0]] for g in groups) / pos_tokens
    return ContrastiveStep(lm, float(np.mean(terms)) if terms else 0.0, own_first, real)


def train(
    model: Any,
    examples: Sequence[TrainingExample],
    options: LoraOptions,
    *,
    checkpoint: Path | None = None,
    identity: str = "",
    on_step: Callable[[StepReport], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train the LoRA of a PEFT ``model`` (``with_lora``) on ``examples``, one per step.

    With ``checkpoint`` (a file path), progress is saved there every
    ``options.checkpoint_every`` steps and when the run is interrupted (KeyboardInterrupt, or
    ``stop`` returning True, which raises KeyboardInterrupt after saving); a later call with
    the same ``identity`` continues from it. Returns the trained pairs and the losses."""
    import torch

    options.check()
    if not examples:
        raise TrainingError("There are no training examples.")
    device = next(model.parameters()).device
    torch.manual_seed(options.seed)
    per_step = batch_size(options, device.type)
    order = _order(len(examples), options.epochs, options.seed, per_step)
    total = len(order)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, options.warmup)
    )
    losses: list[float] = []
    contrast_losses: list[float] = []
    own_first: list[bool] = []
    start_step = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("identity") == identity and state.get("total") == total:
            trainable = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in state["lora"].items():
                    trainable[name].copy_(value)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            losses = list(state["losses"])
            contrast_losses = list(state.get("contrast_losses", []))
            own_first = list(state.get("own_first", []))
            start_step = int(state["step"])
            torch.set_rng_state(state["rng"])

    def save(step: int) -> None:
        if checkpoint is None:
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": identity,
            "total": total,
            "step": step,
            "lora": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "losses": losses,
            "contrast_losses": contrast_losses,
            "own_first": own_first,
            "rng": torch.get_rng_state(),
            "options": asdict(options),
        }
        tmp = checkpoint.with_name(checkpoint.name + ".partial")
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)

    def precision() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    tokens = 0
    started = time.perf_counter()
    step = start_step
    try:
        for step in range(start_step, total):
            if stop is not None and stop():
                raise KeyboardInterrupt
            batch = [examples[i] for i in order[step]]
            if options.contrast > 0 and any(e.negatives for e in batch):
                parts = _contrastive_step(model, batch, options.contrast, device, precision)
                loss, real = torch.tensor(parts.lm_loss), parts.tokens
                contrast_losses.append(parts.contrast)
                own_first += parts.own_first
            else:
                input_ids, mask, labels, real = _tensors(batch, device)
                with precision():
                    loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            tokens += real
            done = step + 1
            if done % options.checkpoint_every == 0 and done < total:
                save(done)
            if on_step is not None:
                elapsed = time.perf_counter() - started
                rate = (done - start_step) / elapsed if elapsed > 0 else 0.0
                on_step(
                    StepReport(
                        step=done,
                        total=total,
                        loss=float(np.mean(losses[-10:])),
                        examples_per_s=rate * per_step,
                        tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                        seconds_left=(total - done) / rate if rate > 0 else 0.0,
                        contrast=(float(np.mean(contrast_losses[-10:]))
                                  if contrast_losses else None),
                    )
                )
    except KeyboardInterrupt:
        save(len(losses))
        raise
    model.eval()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return TrainResult(
        pairs=lora_pairs(model),
        steps=total,
        first_loss=float(np.mean(losses[:10])),
        final_loss=float(np.mean(losses[-10:])),
        losses=losses,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        device=device.type,
        resumed_from=start_step,
        peak_memory_bytes=int(peak),
        contrast_losses=contrast_losses,
        own_first=own_first,
    )


def next_token_logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """The model's logits for the token after ``ids`` (float64), for export checks."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(ids)], device=device))
    return out.logits[0, -1].double().cpu().numpy()
