"""What sampling costs per token under dpl's settings: llama.cpp's chain against its own
defaults and against dpl's own draw (``models.sampling``), on the same logits.

dpl samples the paper's way, temperature 0.8 and top-p 0.95 with no top-k and no min-p;
llama-cpp-python's completion calls default to top-k 40 and min-p 0.05. Without a top-k,
llama.cpp's top-p ranks the vocabulary on every token, at a cost that grows with the tokens it
keeps; dpl's draw takes the same distribution without sorting. This reads one real prompt,
then times each sampler alone (no decoding) on its last logits, alternating, and reports
microseconds per sampled token and the ratio, beside one decode step for scale. Along one
review it then times llama.cpp's chain and dpl's draw at every position, counts the tokens
top-p keeps there (whether a top-k would change what is sampled) and the share of the
temperature-scaled probability inside that set (one over it is the mean number of candidates
dpl draws). Last, both on a vocabulary of
Qwen2.5's size (152,064), made from the real logits plus a tail resampled from them, since a
7B model's vocabulary is three times the bundled one's.

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
DPL_CHAIN = "llama.cpp, dpl's settings (top_k 0, min_p 0)"
DPL_DRAW = "dpl's own draw (`models.sampling`), same settings"
LARGE_VOCAB = 152_064
SETTINGS = {
    DPL_CHAIN: {"top_k": 0, "min_p": 0.0},
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


class OwnDraw:
    """dpl's sampler behind the ``sample(ctx, index)`` call llama-cpp-python's samplers take."""

    def __init__(self, gen, seed: int) -> None:
        from models import SamplingParams
        from models.sampling import Sampler

        self._sampler = Sampler(gen.vocab, SamplingParams(temperature=0.8, top_p=0.95), None, seed)

    def sample(self, ctx, index: int) -> int:
        return self._sampler.sample(ctx.ctx, index)


def decode_step_us(llm, token: int, steps: int) -> float:
    """Microseconds of one decode step (one token appended to the context), median of ``steps``."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        llm.eval([token])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def along_review(gen, messages, ids: list[int], max_tokens: int, draws: int) -> dict:
    """At each position of one review dpl writes (seed 100): the tokens top-p 0.95 keeps (full
    softmax of the model's logits there), the share of the probability at temperature 0.8 that
    falls inside them, and microseconds per token of llama.cpp's chain with dpl's settings and
    of dpl's draw, ``draws`` draws each on those logits. Also returns the prompt's last logits."""
    import llama_cpp
    import numpy as np

    from models import SamplingParams

    llm = gen.llm
    text, _ = gen.complete(messages, SamplingParams(max_tokens=max_tokens, seed=100))
    written = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    chain = llm._init_sampler(temp=0.8, top_p=0.95, top_k=0, min_p=0.0)  # noqa: SLF001
    own = OwnDraw(gen, seed=7)
    sizes, inside, chain_us, own_us = [], [], [], []
    first_logits = None
    for token in written:
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)
        if first_logits is None:
            first_logits = logits.astype(np.float32)
        order = np.argsort(-logits, kind="stable")
        probs = np.exp(logits[order] - logits.max())
        keep = int(np.searchsorted(np.cumsum(probs / probs.sum()), 0.95) + 1)
        sizes.append(keep)
        scaled = np.exp((logits[order] - logits.max()) / 0.8)
        inside.append(float(scaled[:keep].sum() / scaled.sum()))
        chain_us.append(time_chain(llm, chain, draws))
        own_us.append(time_chain(llm, own, draws))
        llm.eval([token])
    return {
        "nucleus": sizes,
        "inside": inside,
        "chain_us": chain_us,
        "own_us": own_us,
        "first_logits": first_logits,
    }


def large_vocabulary(logits, size: int, seed: int = 0):
    """A vocabulary of ``size`` logits: the real ones, then a tail drawn from the real logits
    below their 1,000 largest (the head, where top-p's choice is, stays the model's)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tail_from = np.sort(logits)[: len(logits) - 1000]
    tail = rng.choice(tail_from, size - len(logits)) + rng.normal(0, 0.01, size - len(logits))
    return np.concatenate([logits, tail.astype(np.float32)])


def time_on_array(logits, samples: int, rounds: int) -> dict[str, float]:
    """Microseconds per token on logits held in numpy (no model context): llama.cpp's chain
    with dpl's settings, applied to a token array filled from them each time as llama.cpp's
    own sample call fills it; the fill alone; dpl's draw. Medians of ``rounds`` alternating."""
    import ctypes

    import llama_cpp
    import numpy as np

    from models import SamplingParams
    from models.sampling import TOKEN_DATA, draw

    n = len(logits)
    data = (llama_cpp.llama_token_data * n)()
    view = np.ctypeslib.as_array(data).view(TOKEN_DATA)
    array = llama_cpp.llama_token_data_array()
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(0.95, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(0.8))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(7))
    ids = np.arange(n, dtype=np.int32)

    def fill() -> None:
        view["id"] = ids
        view["logit"] = logits
        view["p"] = 0.0
        array.data = data
        array.size = n
        array.selected = -1
        array.sorted = False

    def chain_once() -> None:
        fill()
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))

    params = SamplingParams(temperature=0.8, top_p=0.95)
    rng = np.random.default_rng(7)
    runs = {"chain": chain_once, "fill": fill, "own": lambda: draw(logits, params, rng)}
    per_round: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds):
        for name in runs if i % 2 == 0 else reversed(list(runs)):
            start = time.perf_counter()
            for _ in range(samples):
                runs[name]()
            per_round[name].append((time.perf_counter() - start) / samples * 1e6)
    llama_cpp.llama_sampler_free(chain)
    return {name: statistics.median(values) for name, values in per_round.items()}


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
    samplers[DPL_DRAW] = OwnDraw(gen, seed=7)
    per_round: dict[str, list[float]] = {name: [] for name in samplers}
    for i in range(args.rounds):
        names = list(samplers) if i % 2 == 0 else list(reversed(samplers))
        for name in names:
            per_round[name].append(time_chain(llm, samplers[name], args.samples))
    token = ids[-1]
    step = decode_step_us(llm, token, args.decode_steps)
    review = along_review(gen, messages, ids, args.nucleus_tokens, args.review_draws)
    large = large_vocabulary(review.pop("first_logits"), LARGE_VOCAB)
    return {
        "model": gen.info.model_id,
        "vocab": llm.n_vocab(),
        "prompt_tokens": len(ids),
        "per_round": per_round,
        "median": {name: statistics.median(v) for name, v in per_round.items()},
        "decode_step_us": step,
        "review": review,
        "large": time_on_array(large, args.samples // 4, args.rounds),
    }


def report(result: dict, args, load: tuple[float, float]) -> str:
    base = result["median"][DPL_CHAIN]
    step = result["decode_step_us"]
    review = result["review"]
    sizes = review["nucleus"]
    chain_review = statistics.median(review["chain_us"])
    own_review = statistics.median(review["own_us"])
    chain_mean = statistics.mean(review["chain_us"])
    own_mean = statistics.mean(review["own_us"])
    large = result["large"]
    lines = [
        "# Sampling's cost per token",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average before / after {load[0]:.2f} / {load[1]:.2f}.",
        f"Model: {result['model']} (vocabulary {result['vocab']:,}); logits of a "
        f"{result['prompt_tokens']}-token review prompt from the dev data; temperature 0.8, "
        f"top-p 0.95; {args.samples} draws per measurement, {args.rounds} rounds with the "
        "settings alternating; medians. `python -m benchmarks.sampler`.",
        "",
        "| sampler | µs per token | ratio to llama.cpp with dpl's settings | share of one "
        "decode step |",
        "|---|---:|---:|---:|",
    ]
    for name, value in result["median"].items():
        lines.append(f"| {name} | {value:.0f} | {value / base:.3f} | {value / step:.1%} |")
    lines += [
        "",
        f"One decode step of this model here (the context at {result['prompt_tokens']} tokens, "
        f"median of {args.decode_steps}): {step / 1000:.1f} ms. At the prompt's last position, "
        f"where these were timed, top-p 0.95 keeps {sizes[0]:,} tokens.",
        "",
        "## Along one review",
        "",
        f"At each of the {len(sizes)} positions of one review written with dpl's settings "
        f"(seed 100), {args.review_draws} draws of each sampler on the logits there (their mean "
        "time); then the median, mean (what sets tokens per second) and 90th percentile over "
        "the positions.",
        "",
        "| sampler | median µs per token | mean | 90th percentile | ratio of means |",
        "|---|---:|---:|---:|---:|",
        f"| llama.cpp, dpl's settings | {chain_review:.0f} | {chain_mean:.0f} | "
        f"{_percentile(review['chain_us'], 0.9):.0f} | 1.000 |",
        f"| dpl's own draw | {own_review:.0f} | {own_mean:.0f} | "
        f"{_percentile(review['own_us'], 0.9):.0f} | {own_mean / chain_mean:.3f} |",
        "",
        "### Is top-k 40 the same sampling?",
        "",
        "Tokens top-p 0.95 keeps (at temperature 1, where both apply it) at each position:",
        "",
        "| median | 90th percentile | largest | positions keeping more than 40 |",
        "|---:|---:|---:|---:|",
        f"| {statistics.median(sizes):.0f} | {_percentile(sizes, 0.9):.0f} | {max(sizes)} | "
        f"{sum(size > 40 for size in sizes)} of {len(sizes)} |",
        "",
        "### How often dpl's draw draws again",
        "",
        "Share of the probability at temperature 0.8 inside the top-p set: a candidate is kept "
        "with this chance, so one over it is the mean number drawn per token.",
        "",
        "| median | lowest | mean candidates per token (over the positions) |",
        "|---:|---:|---:|",
        f"| {statistics.median(review['inside']):.4f} | {min(review['inside']):.4f} | "
        f"{statistics.mean(1 / share for share in review['inside']):.3f} |",
        "",
        f"## A vocabulary of {LARGE_VOCAB:,} tokens",
        "",
        "The prompt's last logits plus a tail resampled from them below their 1,000 largest, "
        "held in numpy; llama.cpp's chain (top-p 0.95, temperature 0.8, draw) is applied to a "
        "token array filled from them each time, as its own sample call fills one. "
        f"{args.samples // 4} draws per measurement, {args.rounds} alternating rounds; medians.",
        "",
        "| sampler | µs per token | ratio |",
        "|---|---:|---:|",
        f"| llama.cpp, dpl's settings (array fill included: {large['fill']:.0f} µs) | "
        f"{large['chain']:.0f} | 1.000 |",
        f"| dpl's own draw | {large['own']:.0f} | {large['own'] / large['chain']:.3f} |",
        "",
    ]
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="draws per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--decode-steps", type=int, default=20, help="decode steps timed")
    parser.add_argument("--nucleus-tokens", type=int, default=128, help="review length probed")
    parser.add_argument(
        "--review-draws", type=int, default=20, help="draws per sampler at each review position"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    before = os.getloadavg()[0]
    result = run(args)
    after = os.getloadavg()[0]
    write_results(args.out, report(result, args, (before, after)))


if __name__ == "__main__":
    main()
