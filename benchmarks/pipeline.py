"""Latency of the whole DPL pipeline against one RAG generation, cold and warm.

For one dev-data user (held-out latest review as the target) and the default
configuration (k=8, m=4, n=4), each repetition runs, on the same loaded models:

- ``rag``: retrieval plus one generation (the baseline);
- ``dpl`` cold: a fresh copy of the database, so nothing is cached (embeddings,
  comparison sets, differences, profile all computed);
- ``dpl`` warm: the same request again, so only the generation runs.

Reported: median wall time, LLM calls and prompt/completion tokens, and the
ratios cold/rag and warm/rag (the median of the per-repetition ratios).

    python -m benchmarks.pipeline [--user ID] [--reps 3]

Writes benchmarks/results/pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, copy_db, dev_store, timed_run, write_results
from models import TextGenerator

RESULTS = RESULTS_DIR / "pipeline.md"


class Counting(TextGenerator):
    """Counts LLM calls and the tokens they used, passing everything to the real model."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner, self.info = inner, inner.info
        self.reset()

    def reset(self) -> None:
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self._streams: list[Any] = []

    def count_tokens(self, messages: Sequence[dict]) -> int:
        return self.inner.count_tokens(messages)

    def stream(self, messages, params):  # noqa: ANN001
        self.calls += 1
        s = self.inner.stream(messages, params)
        self._streams.append(s)
        return s

    def complete_json(self, messages, schema, params, *, retries=1, stop=None):  # noqa: ANN001
        self.calls += 1
        value, stats = self.inner.complete_json(
            messages, schema, params, retries=retries, stop=stop
        )
        self.prompt_tokens += stats.prompt_tokens
        self.completion_tokens += stats.completion_tokens
        return value, stats

    def totals(self) -> tuple[int, int, int]:
        for s in self._streams:
            if s.stats is not None:
                self.prompt_tokens += s.stats.prompt_tokens
                self.completion_tokens += s.stats.completion_tokens
        self._streams = []
        return self.calls, self.prompt_tokens, self.completion_tokens


@dataclass
class Run:
    label: str
    seconds: float
    first_token_s: float
    """Until the first token of the review streams: what a person waits before reading."""
    calls: int
    prompt_tokens: int
    completion_tokens: int
    generated_tokens: int


def timed(engine, gen: Counting, target, method: str, label: str) -> Run:
    gen.reset()
    llm = getattr(gen.inner, "llm", None)
    if llm is not None:
        # Empty llama.cpp's KV cache: otherwise a run reuses the prompt prefix the previous
        # run left behind (the same past reviews), and first-token times measure that reuse.
        llm.reset()
    run = timed_run(engine, target, method)
    calls, p, c = gen.totals()
    result, seconds, first = run.result, run.seconds, run.first_token_s
    assert result is not None and result.llm_calls == calls, (result, calls)
    generated = result.stats.completion_tokens if result.stats else 0
    return Run(label, seconds, first if first is not None else seconds, calls, p, c, generated)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", default="A34O0KQV4QXWNQ")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from dpl_engine import Engine, EngineConfig
    from models.embeddings import load_embedder
    from models.llama import load_generator
    from user_store import UserStore

    tmp = Path(tempfile.mkdtemp(prefix="dpl-bench-"))
    base = dev_store(tmp / "base.db")

    t0 = time.perf_counter()
    gen = Counting(load_generator())
    t1 = time.perf_counter()
    embedder = load_embedder()
    t2 = time.perf_counter()
    config = EngineConfig()

    runs: list[dict[str, Run]] = []
    for rep in range(args.reps):
        path = tmp / f"rep{rep}.db"
        copy_db(base, path)
        store = UserStore(path)
        engine = Engine(store, gen, embedder, config)
        target = engine.held_out_target(args.user)
        rep_runs = {
            "rag": timed(engine, gen, target, "rag", "rag"),
            "cold": timed(engine, gen, target, "dpl", "dpl cold"),
            "warm": timed(engine, gen, target, "dpl", "dpl warm"),
        }
        store.close()
        runs.append(rep_runs)
        print(
            rep,
            {
                k: f"{v.first_token_s:.2f}s/{v.seconds:.2f}s/{v.calls} calls"
                for k, v in rep_runs.items()
            },
            flush=True,
        )

    def med(key: str, attr: str) -> float:
        return statistics.median(getattr(r[key], attr) for r in runs)

    def ratio(key: str, attr: str) -> float:
        return statistics.median(getattr(r[key], attr) / getattr(r["rag"], attr) for r in runs)

    rows = []
    for key, label in (
        ("rag", "rag (baseline)"),
        ("cold", "dpl, cold cache"),
        ("warm", "dpl, warm cache"),
    ):
        rows.append(
            f"| {label} | {med(key, 'first_token_s'):.2f} | {med(key, 'seconds'):.2f} | "
            f"{med(key, 'calls'):.0f} | {med(key, 'prompt_tokens'):.0f} | "
            f"{med(key, 'completion_tokens'):.0f} | {med(key, 'generated_tokens'):.0f} |"
        )
    ttft_cold, ttft_warm = ratio("cold", "first_token_s"), ratio("warm", "first_token_s")
    wall_cold, wall_warm = ratio("cold", "seconds"), ratio("warm", "seconds")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    report = f"""# Pipeline latency: dpl (cold and warm) against one rag generation

`python -m benchmarks.pipeline --user {args.user} --reps {args.reps}`

- Data: amazon14-mi5 dev set; user `{args.user}`, target = latest review (held out).
- Config: k={config.k}, m={config.m}, n={config.n}, seed={config.seed}; analysis max_tokens=\
{config.analysis.max_tokens}, generation max_tokens={config.generation.max_tokens}; same model \
and sampling for every method.
- Model: {gen.model_id} (llama.cpp, n_ctx={gen.n_ctx}); embedder: {embedder.model_id}.
- Machine: {cpu}, {os.cpu_count()} CPUs visible (shared), Python {platform.python_version()}.
- Load times (not in the runs): generator {t1 - t0:.2f} s, embedder {t2 - t1:.2f} s.
- Each repetition: rag, then dpl on a fresh database copy (cold), then the same dpl again
  (warm); medians over {args.reps} repetitions. llama.cpp's KV cache is emptied before each
  run, so no run reuses a prompt prefix left by the one before.

| run | first token s | total s | LLM calls | prompt tokens | completion tokens | review tokens |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Ratios (median of per-repetition ratios against rag):

| | time to first review token | total time |
|---|---:|---:|
| cold dpl / rag | **{ttft_cold:.1f}x** | {wall_cold:.1f}x |
| warm dpl / rag | **{ttft_warm:.2f}x** | {wall_warm:.2f}x |

Time to the first review token is the fair comparison: the review streams from then on at
the same speed whatever the method, while total time also depends on how long each review
happens to be (the columns "review tokens"). Token counts of JSON attempts that failed and
were retried are not included (the model only reports the attempt that is returned).
Load average at the end of the run: {load:.1f} on {os.cpu_count()} CPUs (the machine is
shared, so absolute times are noisy; the ratios compare runs made side by side).

Cold cost is one JSON-constrained differences call per comparison item plus the profile call,
and embedding every other reviewer of the comparison items. Warm runs reuse all of it and make
only the generation call; what remains above 1x is the longer dpl prompt (profile added).
"""
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
