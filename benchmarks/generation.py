"""Generation and embedding speed of the ``models`` backends against the bare libraries.

Generation: the ``models`` generator against a plain llama-cpp-python loop
(``create_chat_completion(stream=True)``) on the same Llama instance, prompt,
sampling settings and seed, alternating, several repetitions; the KV cache is
cleared before every run so each one pays for its prompt. Time to first token and
tokens/s are measured by one outside stopwatch for both sides. Embeddings: reviews/s
of ``embed`` on real reviews against ``SentenceTransformer.encode`` on the same batch.

    python -m benchmarks.generation [--reps 5] [--max-tokens 128] [--reviews 1000]
        [--model PATH] [--generation-only] [--out FILE.md]

Writes benchmarks/results/generation.md. ``--model`` times another GGUF (e.g. the synthetic 7B
of ``benchmarks/synthetic_gguf.py``, loaded as dpl loads any model: on a GPU where there is
one); ``--generation-only`` leaves out the prompt-reading and embedding sections.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import DATA, RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "generation.md"


def load_reviews() -> list[dict]:
    with gzip.open(DATA / "reviews.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def review_prompt(reviews: list[dict]) -> list[dict]:
    """A review-writing prompt from one real user's history (about 600 tokens)."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in reviews:
        by_user[r["user_id"]].append(r)
    user = max(sorted(by_user), key=lambda u: len(by_user[u]))
    history = sorted(by_user[user], key=lambda r: r["timestamp"])
    past, target = history[:-1][-5:], history[-1]
    shown = "\n\n".join(
        f"Item {r['parent_asin']}, rated {r['rating']:.0f}: {r['title']}\n{r['text'][:500]}"
        for r in past
    )
    return [
        {"role": "system", "content": "You write product reviews in the voice of one customer."},
        {
            "role": "user",
            "content": f"Past reviews by this customer:\n\n{shown}\n\nWrite their "
            f"review of item {target['parent_asin']}, rated {target['rating']:.0f}, titled "
            f"{target['title']!r}.",
        },
    ]


def raw_run(llm, messages, max_tokens: int, seed: int) -> tuple[str, float, float]:
    llm.reset()
    start = time.perf_counter()
    first = 0.0
    parts = []
    for chunk in llm.create_chat_completion(
        messages=messages,
        stream=True,
        temperature=0.8,
        top_p=0.95,
        top_k=0,
        min_p=0.0,
        repeat_penalty=1.0,
        max_tokens=max_tokens,
        seed=seed,
    ):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            if not first:
                first = time.perf_counter()
            parts.append(delta)
    end = time.perf_counter()
    return "".join(parts), first - start, end - first


def ours_run(gen, messages, max_tokens: int, seed: int):
    from models import SamplingParams

    gen.llm.reset()
    start = time.perf_counter()
    first = 0.0
    stream = gen.stream(messages, SamplingParams(max_tokens=max_tokens, seed=seed))
    for _ in stream:
        if not first:
            first = time.perf_counter()
    end = time.perf_counter()
    return stream.text, first - start, end - first, stream.stats


def bench_generation(args, reviews) -> dict:
    from models.llama import load_generator

    gen = load_generator(args.model)
    messages = review_prompt(reviews)
    prompt_tokens = gen.count_tokens(messages)
    ours_run(gen, messages, 8, 0)  # warm-up: page the weights in
    raw_run(gen.llm, messages, 8, 0)
    rows = []
    for rep in range(args.reps):
        seed = 100 + rep
        pair = {}
        order = ("raw", "ours") if rep % 2 == 0 else ("ours", "raw")
        for side in order:
            if side == "raw":
                pair["raw"] = raw_run(gen.llm, messages, args.max_tokens, seed)
            else:
                pair["ours"] = ours_run(gen, messages, args.max_tokens, seed)
        raw_text, ttft_raw, dec_raw = pair["raw"]
        n_raw = len(gen.llm.tokenize(raw_text.encode("utf-8"), add_bos=False, special=False))
        _, ttft_ours, dec_ours, stats = pair["ours"]
        # dpl draws with a random stream of its own (models.sampling): the texts differ, the
        # settings and the distribution are the same; tokens/s compares the loops per token
        n = stats.completion_tokens
        rows.append(
            {
                "seed": seed,
                "tokens": n,
                "tokens_raw": n_raw,
                "ttft_raw": ttft_raw,
                "ttft_ours": ttft_ours,
                "tps_raw": (n_raw - 1) / dec_raw,
                "tps_ours": (n - 1) / dec_ours,
                "tps_ours_internal": stats.tokens_per_s,
            }
        )
        print(
            f"rep {rep}: {n} tokens  raw {rows[-1]['tps_raw']:.1f} tok/s "
            f"ttft {ttft_raw * 1000:.0f} ms | ours {rows[-1]['tps_ours']:.1f} tok/s "
            f"ttft {ttft_ours * 1000:.0f} ms",
            flush=True,
        )
    for r in rows:
        r["tps_ratio"] = r["tps_ours"] / r["tps_raw"]
        r["ttft_ratio"] = r["ttft_raw"] / r["ttft_ours"]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    return {
        "info": gen.info,
        "prompt_tokens": prompt_tokens,
        "rows": rows,
        "median": med,
        "generator": gen,
    }


def bench_prompt_reading(gen, messages, reps: int) -> dict:
    """Reading one prompt in dpl's 128-token batches against llama.cpp's default of 512 (a
    second instance of the same model, same threads), alternating, cache cleared each time."""
    from llama_cpp import Llama

    from models.llama import PROMPT_BATCH, default_threads

    threads = default_threads()
    default = Llama(
        model_path=gen.info.path,
        n_ctx=gen.info.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    ids = gen._prompt_ids(messages)
    times: dict[int, list[float]] = {PROMPT_BATCH: [], default.n_batch: []}
    for rep in range(reps + 1):  # the first round only pages the weights in
        for llm in (gen.llm, default) if rep % 2 == 0 else (default, gen.llm):
            llm.reset()
            start = time.perf_counter()
            llm.eval(ids)
            if rep:
                times[llm.n_batch].append(time.perf_counter() - start)
    med = {n: statistics.median(t) for n, t in times.items()}
    return {"tokens": len(ids), "ours": PROMPT_BATCH, "default": default.n_batch, "median": med}


def bench_embeddings(args, reviews) -> dict:
    from models.embeddings import load_embedder

    texts = [r["text"] for r in reviews if r["text"].strip()][: args.reviews]
    emb = load_embedder()
    emb.embed(texts[:64])  # warm-up
    results = {"ours": [], "raw": []}
    for rep in range(2):
        for side in ("raw", "ours") if rep % 2 == 0 else ("ours", "raw"):
            start = time.perf_counter()
            if side == "ours":
                emb.embed(texts, batch_size=32)
            else:
                emb.model.encode(
                    texts,
                    batch_size=32,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            results[side].append(len(texts) / (time.perf_counter() - start))
    return {"n": len(texts), "ours": max(results["ours"]), "raw": max(results["raw"])}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_report(
    gen: dict, read: dict | None, emb: dict | None, load_before, load_after, args
) -> str:
    import llama_cpp

    med = gen["median"]
    ratio_tps = med["tps_ratio"]
    ratio_ttft = med["ttft_ratio"]
    info = gen["info"]
    lines = [
        "# Generation and embedding benchmark",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs visible, "
        f"{len(os.sched_getaffinity(0))} usable. Python {platform.python_version()}, "
        f"llama-cpp-python {llama_cpp.__version__}.",
        f"Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(1-minute; the 2 cores are shared with other work, so absolute numbers move "
        "between runs; the ratios compare runs interleaved in the same process).",
        f"Model: {info.model_id} ({info.quantization}), n_ctx {info.n_ctx}, "
        f"device {info.device}; prompt {gen['prompt_tokens']} tokens from a real user's "
        f"history; max_tokens {args.max_tokens}; temperature 0.8, top_p 0.95; "
        f"{args.reps} repetitions with seeds 100..{100 + args.reps - 1}, alternating order, "
        "KV cache cleared before each run. dpl samples with its own random stream, so the texts "
        "differ; tokens/s is per token of each loop.",
        "",
        "## Generation: `models` generator vs a bare llama-cpp-python loop",
        "",
        "Ratios are the median of the per-repetition ratios (each repetition runs both loops "
        "back to back, so a burst of load from other work hits one pair, not one side).",
        "",
        "| | bare loop | `models` | ratio (models / bare) |",
        "|---|---:|---:|---:|",
        f"| tokens/s (median) | {med['tps_raw']:.1f} | {med['tps_ours']:.1f} | "
        f"**{ratio_tps:.3f}** |",
        f"| time to first token, ms (median) | {med['ttft_raw'] * 1000:.1f} | "
        f"{med['ttft_ours'] * 1000:.1f} | {ratio_ttft:.3f} (bare / models) |",
        f"| completion tokens (median) | {med['tokens_raw']:.0f} | {med['tokens']:.0f} | |",
        "",
        "Per repetition:",
        "",
        "| seed | bare tokens | `models` tokens | bare tok/s | models tok/s | ratio | bare TTFT ms "
        "| models TTFT ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in gen["rows"]:
        lines.append(
            f"| {r['seed']} | {r['tokens_raw']} | {r['tokens']} | {r['tps_raw']:.1f} "
            f"| {r['tps_ours']:.1f} | {r['tps_ratio']:.3f} | {r['ttft_raw'] * 1000:.1f} | "
            f"{r['ttft_ours'] * 1000:.1f} |"
        )
    lines += [
        "",
        f"Target: tokens/s ratio >= 0.95. Measured: {ratio_tps:.3f} "
        f"({'met' if ratio_tps >= 0.95 else 'NOT met'}).",
        "",
    ]
    if read is None:
        return "\n".join(lines)
    lines += [
        "## Reading a prompt: dpl's batches against llama.cpp's default",
        "",
        "dpl feeds the prompt to llama.cpp in batches of "
        f"{read['ours']} tokens and checks for a cancel between them; llama.cpp's default "
        f"batch is {read['default']} tokens. {read['tokens']}-token prompt, median of "
        f"{args.reps} alternating runs, cache cleared before each.",
        "",
        f"| | n_batch {read['default']} (default) | n_batch {read['ours']} (dpl) | "
        "ratio (default / dpl) |",
        "|---|---:|---:|---:|",
        f"| prompt read, ms | {read['median'][read['default']] * 1000:.1f} | "
        f"{read['median'][read['ours']] * 1000:.1f} | "
        f"{read['median'][read['default']] / read['median'][read['ours']]:.3f} |",
        f"| longest wait for a cancel while reading, ms (one batch) | "
        f"{read['median'][read['default']] * 1000 * read['default'] / read['tokens']:.0f} | "
        f"{read['median'][read['ours']] * 1000 * read['ours'] / read['tokens']:.0f} | |",
        "",
        "## Embeddings: all-MiniLM-L6-v2 on real reviews (CPU)",
        "",
        "| | `SentenceTransformer.encode` | `models` embed | ratio |",
        "|---|---:|---:|---:|",
        f"| reviews/s ({emb['n']} reviews, batch 32, best of 2) | {emb['raw']:.1f} | "
        f"{emb['ours']:.1f} | {emb['ours'] / emb['raw']:.3f} |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: bundled)")
    parser.add_argument(
        "--generation-only", action="store_true", help="skip prompt reading and embeddings"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    reviews = load_reviews()
    gen = bench_generation(args, reviews)
    read = emb = None
    if not args.generation_only:
        read = bench_prompt_reading(gen["generator"], review_prompt(reviews), args.reps)
        emb = bench_embeddings(args, reviews)
    report = write_report(gen, read, emb, load_before, os.getloadavg(), args)
    write_results(args.out, report)


if __name__ == "__main__":
    main()
