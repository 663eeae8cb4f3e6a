"""What llama.cpp's sampling chain costs per token under dpl's settings, against llama.cpp's own
defaults, on the same logits.

dpl samples the paper's way, temperature 0.8 and top-p 0.95 with no top-k and no min-p
(``top_k=0, min_p=0``); llama-cpp-python's completion calls default to top-k 40 and min-p 0.05.
Without a top-k, top-p ranks the whole vocabulary on every token. This reads one real prompt,
then times the sampling chain alone (no decoding) on its last logits, the settings alternating,
and reports microseconds per sampled token and the ratio, beside one decode step for scale;
then how many tokens top-p keeps along one review, which says whether a top-k would change
what is sampled.

    python -m benchmarks.sampler [--samples 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.generation import cpu_name, load_reviews, review_prompt

RESULTS = RESULTS_DIR / "sampler.md"
SETTINGS = {
    "dpl (top_k 0, min_p 0)": {"top_k": 0, "min_p": 0.0},
    "top_k 40, min_p 0": {"top_k": 40, "min_p": 0.0},
    "llama.cpp default (top_k 40, min_p 0.05)": {"top_k": 40, "min_p": 0.05},
    "top_k 0, min_p 0.05": {"top_k": 0, "min_p": 0.05},
}


def time_chain(llm, sampler, samples: int) -> float:
    """Microseconds per sampled token over ``samples`` draws on the context's last logits."""
    ctx = llm._ctx  # noqa: SLF001 - the sampler API takes llama-cpp-python's context wrapper
    start = time.perf_counter()
    for _ in range(samples):
        sampler.sample(ctx, -1)
    return (time.perf_counter() - start) / samples * 1e6


def decode_step_us(llm, token: int, steps: int) -> float:
    """Microseconds of one decode step (one token appended to the context), median of ``steps``."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        llm.eval([token])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def nucleus_sizes(gen, messages, ids: list[int], max_tokens: int) -> list[int]:
    """Tokens top-p 0.95 keeps at each position of one review dpl's sampler writes (seed 100),
    from the full softmax of the model's logits there."""
    import llama_cpp
    import numpy as np

    from models import SamplingParams

    llm = gen.llm
    text, _ = gen.complete(messages, SamplingParams(max_tokens=max_tokens, seed=100))
    written = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    sizes = []
    for token in written:
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)
        probs = np.exp(logits - logits.max())
        ranked = np.sort(probs / probs.sum())[::-1]
        sizes.append(int(np.searchsorted(np.cumsum(ranked), 0.95) + 1))
        llm.eval([token])
    return sizes


def run(args) -> dict:
    from models.llama import load_generator

    gen = load_generator()
    llm = gen.llm
    messages = review_prompt(load_reviews())
    ids = gen.prompt_token_ids(messages)
    llm.reset()
    llm.eval(ids)
    samplers = {
        name: llm._init_sampler(temp=0.8, top_p=0.95, **options)  # noqa: SLF001
        for name, options in SETTINGS.items()
    }
    per_round: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for i in range(args.rounds):
        names = list(SETTINGS) if i % 2 == 0 else list(reversed(SETTINGS))
        for name in names:
            per_round[name].append(time_chain(llm, samplers[name], args.samples))
    token = ids[-1]
    step = decode_step_us(llm, token, args.decode_steps)
    sizes = nucleus_sizes(gen, messages, ids, args.nucleus_tokens)
    return {
        "model": gen.info.model_id,
        "vocab": llm.n_vocab(),
        "prompt_tokens": len(ids),
        "per_round": per_round,
        "median": {name: statistics.median(v) for name, v in per_round.items()},
        "decode_step_us": step,
        "nucleus": sizes,
    }


def report(result: dict, args, load: tuple[float, float]) -> str:
    base = result["median"]["dpl (top_k 0, min_p 0)"]
    step = result["decode_step_us"]
    sizes = result["nucleus"]
    lines = [
        "# The sampling chain's cost per token",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average before / after {load[0]:.2f} / {load[1]:.2f}.",
        f"Model: {result['model']} (vocabulary {result['vocab']:,}); logits of a "
        f"{result['prompt_tokens']}-token review prompt from the dev data; temperature 0.8, "
        f"top-p 0.95; {args.samples} draws per measurement, {args.rounds} rounds with the "
        "settings alternating; medians. `python -m benchmarks.sampler`.",
        "",
        "| sampler settings | µs per token | ratio to dpl's | share of one decode step |",
        "|---|---:|---:|---:|",
    ]
    for name, value in result["median"].items():
        lines.append(f"| {name} | {value:.0f} | {value / base:.3f} | {value / step:.1%} |")
    lines += [
        "",
        f"One decode step of this model here (the context at {result['prompt_tokens']} tokens, "
        f"median of {args.decode_steps}): {step / 1000:.1f} ms.",
        "",
        "## Is top-k 40 the same sampling?",
        "",
        "Tokens top-p 0.95 keeps (at temperature 1, where llama.cpp's chain applies it) at each "
        f"of the {len(sizes)} positions of one review written with dpl's settings (seed 100):",
        "",
        "| median | 90th percentile | largest | positions keeping more than 40 |",
        "|---:|---:|---:|---:|",
        f"| {statistics.median(sizes):.0f} | {_percentile(sizes, 0.9):.0f} | {max(sizes)} | "
        f"{sum(size > 40 for size in sizes)} of {len(sizes)} |",
        "",
    ]
    return "\n".join(lines)


def _percentile(values: list[int], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="draws per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--decode-steps", type=int, default=20, help="decode steps timed")
    parser.add_argument("--nucleus-tokens", type=int, default=128, help="review length probed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    before = os.getloadavg()[0]
    result = run(args)
    after = os.getloadavg()[0]
    write_results(args.out, report(result, args, (before, after)))


if __name__ == "__main__":
    main()
