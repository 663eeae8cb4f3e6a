"""The differences of one target decoded one after another against side by side, in one process.

Eight real differences prompts (recorded from the bundled model in
``tests/data/bundled_differences.json``) are answered five ways on the same loaded model, the
ways alternating over ``--reps`` rounds:

* one after another: each JSON call alone in the model's own context, llama-cpp-python's
  completion with its grammar applied to the whole vocabulary before every draw;
* one after another, dpl's sampler: each call alone in the JSON context (what the CPU does),
  its grammar asked only about the token drawn without it, top-p without a full sort;
* side by side: all eight in the second context, each sequence asking its JSON grammar only
  about the token drawn without it (dpl's default);
* side by side, grammar first: the same, with the grammar applied to the whole vocabulary
  before every draw (llama-cpp-python's order), to show what asking about one token saves;
* side by side, free: no grammar at all, the floor.

Sampling is the engine's analysis setting (temperature 0.8, top-p 0.95, 320 tokens, one seed per
prompt). Reported: wall time for the eight, tokens written, tokens per second of wall time, the
ratio to one after another, decode steps, and the time dpl's sampler took per token (grammar
included); the texts at temperature 0 are compared too.

    python -m benchmarks.side_by_side [--model PATH] [--reps 1] [--prompts 8]
        [--out benchmarks/results/side_by_side.md] [--json PATH]

With ``--model`` (e.g. a synthetic 7B GGUF, whose random weights never close the JSON), every
call runs to its 320 tokens, which times the decode alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "side_by_side.md"
PROMPTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "bundled_differences.json"
WAYS = (
    "one after another",
    "one after another, dpl's sampler",
    "side by side",
    "side by side, grammar first",
    "side by side, free",
)


def load_prompts(n: int) -> list[list[dict[str, str]]]:
    records = json.loads(PROMPTS.read_text(encoding="utf-8"))["records"]
    return [r["messages"] for r in records[:n]]


def one_after_another(gen, prompts, schema, params) -> tuple[list[str], int]:
    """llama-cpp-python's own JSON-constrained chat call, each prompt alone."""
    texts, tokens = [], 0
    fmt = {"type": "json_object", "schema": schema}
    for i, messages in enumerate(prompts):
        seeded = _seeded(params, i)
        raw = gen.llm.create_chat_completion(
            messages=messages,
            temperature=seeded.temperature,
            top_p=seeded.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            max_tokens=seeded.max_tokens,
            seed=seeded.seed,
            response_format=fmt,
        )
        texts.append(raw["choices"][0]["message"]["content"])
        tokens += raw["usage"]["completion_tokens"]
    return texts, tokens


def side_by_side(gen, side, prompts, grammar, params) -> tuple[list[str], int]:
    streams = [
        side.submit(
            gen.prompt_token_ids(m), _seeded(params, i), seed=_seeded(params, i).seed,
            grammar=grammar,
        )
        for i, m in enumerate(prompts)
    ]  # fmt: skip

    def drain(stream) -> None:
        for _ in stream:
            pass

    threads = [threading.Thread(target=drain, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s.text for s in streams], sum(s.stats.completion_tokens for s in streams)


def in_turn(gen, side, prompts, grammar, params) -> tuple[list[str], int]:
    texts, tokens = [], 0
    for i, m in enumerate(prompts):
        p = _seeded(params, i)
        with side.submit(gen.prompt_token_ids(m), p, seed=p.seed, grammar=grammar) as stream:
            for _ in stream:
                pass
        texts.append(stream.text)
        tokens += stream.stats.completion_tokens
    return texts, tokens


def _seeded(params, i: int):
    from dataclasses import replace

    return replace(params, seed=(params.seed or 0) + i)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="A GGUF file (default: the bundled model).")
    ap.add_argument("--reps", type=int, default=1, help="Rounds of the five ways (default 1).")
    ap.add_argument("--prompts", type=int, default=8, help="Differences prompts (default 8).")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures as JSON.")
    args = ap.parse_args()

    from dataclasses import replace

    from dpl_engine.method import prompts as dpl_prompts
    from dpl_engine.types import EngineConfig
    from models.llama import load_generator
    from models.side_by_side import SideBySide, SideBySideSettings

    gen = load_generator(args.model)
    prompts = load_prompts(args.prompts)
    schema = dpl_prompts.DIFFERENCES_SCHEMA
    grammar = gen._grammar(schema)  # noqa: SLF001 - the grammar the JSON calls use
    params = replace(EngineConfig().analysis, seed=42)
    sequences = max(len(prompts), 1)

    side = SideBySide(
        gen.llm,
        SideBySideSettings(sequences),
        acquire=gen._acquire,  # noqa: SLF001
        release=gen._release,  # noqa: SLF001
        vocab=gen.vocab,
    )
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(args.reps):
        for way in WAYS:
            start = time.perf_counter()
            sampled, sampling_s, refused = side.sampled, side.sampling_s, side.refused
            fell_back = side.fell_back
            if way == WAYS[0]:
                texts, tokens = one_after_another(gen, prompts, schema, params)
                steps = tokens
            elif way == WAYS[1]:
                side.grammar_first = False
                texts, tokens = in_turn(gen, side, prompts, grammar, params)
                steps = tokens
            else:
                side.grammar_first = way == WAYS[3]
                before = side.steps
                texts, tokens = side_by_side(
                    gen, side, prompts, None if way == WAYS[4] else grammar, params
                )
                steps = side.steps - before
            sampled, sampling_s = side.sampled - sampled, side.sampling_s - sampling_s
            refused, fell_back = side.refused - refused, side.fell_back - fell_back
            wall = time.perf_counter() - start
            per_token_ms = sampling_s / sampled * 1000 if sampled else None
            counted = sampled and not side.grammar_first
            refused_share = refused / sampled if counted else None
            fell_back_share = fell_back / sampled if counted else None
            runs[way].append(
                {
                    "wall_s": wall,
                    "tokens": tokens,
                    "steps": steps,
                    "sampling_ms": per_token_ms,
                    "refused": refused_share,
                    "fell_back": fell_back_share,
                }
            )
            print(f"{way}: {wall:.1f} s, {tokens} tokens, {steps} decode steps", flush=True)

    greedy = replace(params, temperature=0.0)
    alone, _ = one_after_another(gen, prompts, schema, greedy)
    side.grammar_first = False
    together, _ = side_by_side(gen, side, prompts, grammar, greedy)
    equal = sum(a == b for a, b in zip(alone, together, strict=True))
    side.close()

    base = statistics.median(r["wall_s"] for r in runs[WAYS[0]])
    rows, figures = [], {}
    for way in WAYS:
        wall = statistics.median(r["wall_s"] for r in runs[way])
        tokens = statistics.median(r["tokens"] for r in runs[way])
        steps = statistics.median(r["steps"] for r in runs[way])
        timed = [r["sampling_ms"] for r in runs[way] if r["sampling_ms"] is not None]
        sampling = f"{statistics.median(timed):.2f}" if timed else "(inside llama.cpp)"
        shares = [r["refused"] for r in runs[way] if r["refused"] is not None]
        refused = f"{statistics.median(shares):.1%}" if shares and way != WAYS[4] else ""
        shares = [r["fell_back"] for r in runs[way] if r["fell_back"] is not None]
        fell_back = f"{statistics.median(shares):.2%}" if shares and way != WAYS[4] else ""
        figures[way] = {"wall_s": wall, "tokens": tokens, "steps": steps, "runs": runs[way]}
        rows.append(
            f"| {way} | {wall:.1f} | {tokens:.0f} | {tokens / wall:.1f} | {base / wall:.2f}x "
            f"| {steps:.0f} | {sampling} | {refused} | {fell_back} |"
        )
    device = gen.info.device if gen.info.gpu_layers else (platform.processor() or "CPU")
    model = Path(gen.info.path).name
    text = "\n".join(
        [
            "# Differences one after another against side by side",
            "",
            f"`python -m benchmarks.side_by_side{' --model ' + model if args.model else ''}"
            f" --reps {args.reps}` on {device} ({os.cpu_count()} CPUs, "
            f"{gen.info.threads} threads, {gen.info.gpu_layers} layers offloaded), {model}, "
            f"{len(prompts)} real differences prompts, temperature {params.temperature}, "
            f"top-p {params.top_p}, at most {params.max_tokens} tokens; "
            f"{time.strftime('%Y-%m-%d')}. Median of {args.reps} round(s).",
            "",
            "| way | wall s | tokens | tokens/s of wall | speed-up | decode steps "
            "| sampling ms/token | drawn tokens the grammar refused "
            "| of all tokens, the grammar over the whole vocabulary |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"At temperature 0, {equal} of {len(prompts)} side-by-side answers are the text "
            "one after another writes.",
            "",
        ]
    )
    write_results(args.out, text)
    if args.json is not None:
        payload = {"device": device, "model": model, "equal_at_t0": equal, "ways": figures}
        write_results(args.json, json.dumps(payload, indent=2), echo=False)


if __name__ == "__main__":
    main()
