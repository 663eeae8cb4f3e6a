"""``dpl tune``'s costs: training speed and memory, and what an adapter costs at generation.

Training: LoRA steps of the bundled SmolLM2-135M (rank 16, all seven projections, AdamW,
loss on the completion) at two sequence lengths, on whatever device torch sees; tokens/s and
peak memory (the process's resident peak on the CPU, torch's allocator peak on a GPU).
Generation: the same prompt, greedy, through the base model and through the same loaded
model with adapters of several shapes applied (``with_adapter``), and the default shape
merged into a model of its own (``dpl models merge``), interleaved, several
repetitions; the ratio of decode rates is an adapter's cost (target >= 0.95x).

    python -m benchmarks.tune [--steps 6] [--reps 3] [--max-tokens 128]
    python -m benchmarks.tune --training-only --model X.gguf --out tune-gpu.md \
        [--check-ids ids.json --check-out DIR]      # on a GPU machine without llama.cpp

Writes benchmarks/results/tune.md (or --out). With --check-ids, it also trains a rank-8 adapter
briefly, exports it to DIR/check.gguf and saves transformers' logit changes (PEFT on against
off) for the given token ids to DIR/check.npz, so the export of a GPU-trained adapter can be
checked against llama.cpp elsewhere (``python -m benchmarks.tune_check``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "tune.md"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def training_speed(
    steps: int, lengths: tuple[int, ...], model_path: Path, batches: tuple[int, ...]
) -> tuple[list[dict], object, object]:
    import random

    from models import training
    from models.training import LoraOptions, TrainingExample

    device = training.torch_device()
    base, shape = training.load_base(model_path, device)
    rows = []
    model = None
    rng = random.Random(0)
    for batch in batches:
        options = LoraOptions(epochs=1.0, warmup=0.0, batch=batch)
        per_step = training.batch_size(options, device)
        for length in lengths:
            model = training.with_lora(base, options) if model is None else model
            prompt = length * 3 // 4
            examples = [
                TrainingExample(
                    tuple(rng.randrange(1000, 40000) for _ in range(prompt)),
                    tuple(rng.randrange(1000, 40000) for _ in range(length - prompt)),
                )
                for _ in range(steps * per_step)
            ]
            result = training.train(model, examples, options)
            peak = result.peak_memory_bytes or (
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            )
            rows.append(
                {
                    "device": device,
                    "batch": per_step,
                    "tokens": length,
                    "steps": result.steps,
                    "step_s": result.seconds / result.steps,
                    "tokens_per_s": result.tokens / result.seconds,
                    "peak_gib": peak / 1024**3,
                }
            )
            print(rows[-1], flush=True)
    return rows, model, shape


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
VARIANTS: tuple[tuple[str, int, tuple[str, ...] | None], ...] = (
    ("rank 16, all 7 projections (the default)", 16, None),
    ("rank 4, all 7 projections", 4, None),
    ("rank 16, attention only (q, k, v, o)", 16, ATTENTION),
    ("rank 4, attention only (q, k, v, o)", 4, ATTENTION),
    ("rank 8, q and v only", 8, ("q_proj", "v_proj")),
)
"""Adapter shapes whose decoding cost is measured: (label, rank, projections or all)."""
MERGED = "the default merged into the weights (dpl models merge), its own model"


def sliced(pairs: dict, rank: int, targets: tuple[str, ...] | None) -> dict:
    """A rank-``rank`` adapter on ``targets`` cut from trained rank-16 pairs: what it costs
    llama.cpp to apply depends on its shape only, not on what it learned."""
    return {
        path: (a[:rank], b[:, :rank])
        for path, (a, b) in pairs.items()
        if targets is None or path.rsplit(".", 1)[-1] in targets
    }


def generation_cost(model, shape, reps: int, max_tokens: int) -> list[dict]:
    """Decode tokens/s of the base model and of each adapter shape in VARIANTS on the same
    loaded model, greedy, the variants interleaved within every repetition so that a busy
    moment of the machine falls on all of them alike."""
    from models import training
    from models.adapters import merge_adapter, write_adapter
    from models.base import SamplingParams
    from models.llama import load_generator
    from models.registry import default_gguf_path

    gen = load_generator()
    trained = training.lora_pairs(model)
    messages = [
        {"role": "system", "content": "You write product reviews."},
        {
            "role": "user",
            "content": "Write a long, detailed review of a guitar "
            "tuner that clips onto the headstock, rated 4 of 5.",
        },
    ]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("base model", 0, None, gen)]
        paths = []
        for i, (label, rank, targets) in enumerate(VARIANTS):
            paths.append(
                write_adapter(
                    Path(tmp) / f"bench{i}.gguf",
                    sliced(trained, rank, targets),
                    alpha=2.0 * rank,
                    architecture=shape.architecture,
                    block_count=shape.block_count,
                    n_head=shape.n_head,
                    n_head_kv=shape.n_head_kv,
                    meta={"base_model_id": gen.model_id, "name": "bench"},
                )
            )
            runs.append((label, rank, targets, gen.with_adapter(paths[-1])))
        # the default shape (the first) folded into the weights, as `dpl models merge` does
        merged = merge_adapter(default_gguf_path(), paths[0], Path(tmp) / "merged.gguf")
        runs.append((MERGED, VARIANTS[0][1], VARIANTS[0][2], load_generator(merged)))
        rates: dict[str, list[float]] = {label: [] for label, *_ in runs}
        for _ in range(reps):
            for label, _, _, g in runs:
                _, stats = g.complete(messages, params)
                rates[label].append(stats.tokens_per_s)
    base = statistics.median(rates["base model"])
    return [
        {
            "label": label,
            "rank": rank,
            "projections": len(targets) if targets else (7 if rank else 0),
            "tokens_per_s": statistics.median(rates[label]),
            "ratio": statistics.median(rates[label]) / base,
            "all": rates[label],
            "reps": reps,
            "max_tokens": max_tokens,
        }
        for label, rank, targets, _ in runs
    ]


def export_check(model_path: Path, ids_file: Path, out: Path) -> None:
    """A briefly trained rank-8 adapter and transformers' logit changes for the given ids."""
    import json

    import numpy as np

    from models import training
    from models.adapters import write_adapter
    from models.training import LoraOptions, TrainingExample

    device = training.torch_device()
    base, shape = training.load_base(model_path, device)
    options = LoraOptions(rank=8, alpha=16.0, dropout=0.0, epochs=4, learning_rate=2e-3)
    model = training.with_lora(base, options)
    prompts = json.loads(ids_file.read_text())
    examples = [TrainingExample(tuple(ids), tuple(ids[-4:])) for ids in prompts]
    training.train(model, examples, options)
    out.mkdir(parents=True, exist_ok=True)
    write_adapter(
        out / "check.gguf",
        training.lora_pairs(model),
        alpha=options.alpha,
        architecture=shape.architecture,
        block_count=shape.block_count,
        n_head=shape.n_head,
        n_head_kv=shape.n_head_kv,
        meta={
            "base_model_id": f"{model_path.name}:{model_path.stat().st_size}",
            "name": "check",
            "device": device,
        },
    )
    deltas = {}
    for i, ids in enumerate(prompts):
        with model.disable_adapter():
            off = training.next_token_logits(model, ids)
        deltas[f"p{i}"] = training.next_token_logits(model, ids) - off
    np.savez(out / "check.npz", **deltas)
    print(f"export check written to {out} (trained on {device})")


def _gpu_name() -> str:
    import torch

    return f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--training-only", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--check-ids", type=Path, default=None)
    parser.add_argument("--check-out", type=Path, default=None)
    parser.add_argument(
        "--batches",
        default="0",
        help="Comma-separated examples per step; 0 is the device's default.",
    )
    args = parser.parse_args()
    from models.registry import default_gguf_path

    model_path = args.model or default_gguf_path()
    if args.check_ids is not None:
        export_check(model_path, args.check_ids, args.check_out or Path("."))
    started = time.perf_counter()
    batches = tuple(int(b) for b in args.batches.split(","))
    rows, model, shape = training_speed(args.steps, (256, 512), model_path, batches)
    gen = None if args.training_only else generation_cost(model, shape, args.reps, args.max_tokens)
    lines = [
        "# dpl tune: training speed and the adapter's cost at generation",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs{_gpu_name()}; "
        f"{time.strftime('%Y-%m-%d')}; `python -m benchmarks.tune {' '.join(sys.argv[1:])}` "
        f"({time.perf_counter() - started:.0f} s in all).",
        "",
        "## Training (bundled SmolLM2-135M, LoRA rank 16 on 7 projections, AdamW)",
        "",
        "| device | examples per step | tokens per example | steps | s per step | "
        "training tokens/s | peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['batch']} | {r['tokens']} | {r['steps']} | "
            f"{r['step_s']:.2f} | {r['tokens_per_s']:.0f} | {r['peak_gib']:.2f} GiB |"
        )
    if gen is None:
        write_results(args.out, "\n".join(lines) + "\n", echo=False)
        print("\n".join(lines))
        return
    lines += [
        "",
        "## Generation with an adapter against without (same loaded model, greedy)",
        "",
        f"{gen[0]['max_tokens']} new tokens per run, {gen[0]['reps']} repetitions; each "
        "repetition runs the base model and every adapter shape in turn. Medians.",
        "",
        "| adapter | decode tokens/s | against the base model |",
        "|---|---:|---:|",
    ]
    for r in gen:
        lines.append(f"| {r['label']} | {r['tokens_per_s']:.1f} | {r['ratio']:.2f}x |")
    lines += [
        "",
        "Every run (tokens/s): "
        + "; ".join(f"{r['label']} {[round(x, 1) for x in r['all']]}" for r in gen)
        + ".",
        "",
    ]
    write_results(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
