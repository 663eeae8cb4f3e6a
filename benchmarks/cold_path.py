"""Where the time of a cold ``dpl`` generation goes, on the bundled model, for several users.

For each dev-data user (latest review held out, nothing cached), one run measures:

- ``rag``: one generation (the baseline);
- cold ``dpl``: every comparison set, differences call and the profile, then the review;
- its *floor*: the same prompt tokens read at the raw prefill rate plus the same generated
  tokens at the raw decode rate, both measured in this run by bare llama-cpp-python calls on
  the same model (no dpl code in between);
- where it goes: the time in JSON-constrained differences calls, in the profile call and in
  the review, and in the rest (embedding, clustering, BM25, the store).

Then, on the first user's differences prompts, the JSON grammar's share: each prompt decoded
under the differences schema and without it (same seed, same token limit), tokens/s of each.

And threads: one ``rag`` generation at ``n_threads`` 1 and 2, on an idle machine and with one
busy process beside it (a Python loop, as the app's own work would be).

    python benchmarks/cold_path.py [--users ID ...] [--skip-threads]

Writes benchmarks/results/cold-path.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("DPL_SHARED_DATA", REPO.parent / "shared" / "data")) / "amazon14-mi5"
RESULTS = REPO / "benchmarks" / "results" / "cold-path.md"
USERS = ["A34O0KQV4QXWNQ", "ADH0O8UVJOT10", "A2EZWZ8MBEDOLN"]

from models import TextGenerator, TextStream  # noqa: E402


@dataclass
class Calls:
    """Per kind of call: how many, seconds, prompt and completion tokens."""

    n: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    prompt: int = 0
    completion: int = 0
    json_prompts: list[Any] = field(default_factory=list)
    failed: int = 0
    """Differences calls that gave no valid JSON (the engine then keeps the free text)."""

    def add(self, kind: str, seconds: float, prompt: int, completion: int) -> None:
        self.n[kind] = self.n.get(kind, 0) + 1
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.prompt += prompt
        self.completion += completion


class Timed(TextGenerator):
    """The real model, with every call timed and its tokens counted by kind."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner, self.info = inner, inner.info
        self.calls = Calls()

    def count_tokens(self, messages) -> int:  # noqa: ANN001
        return self.inner.count_tokens(messages)

    def complete_json(self, messages, schema, params, *, retries=1, stop=None):  # noqa: ANN001
        from models import StructuredOutputError

        start = time.perf_counter()
        self.calls.json_prompts.append((messages, params))
        try:
            value, stats = self.inner.complete_json(
                messages, schema, params, retries=retries, stop=stop
            )
        except StructuredOutputError:
            # Every attempt ran to the token limit without valid JSON: counted as such.
            attempts = retries + 1
            self.calls.add("differences", time.perf_counter() - start,
                           attempts * self.count_tokens(messages), attempts * params.max_tokens)
            self.calls.failed += 1
            raise
        self.calls.add("differences", time.perf_counter() - start, stats.prompt_tokens,
                       stats.completion_tokens)
        return value, stats

    def stream(self, messages, params):  # noqa: ANN001
        kind = "profile" if "imitate" in messages[0]["content"] else "review"
        return _TimedStream(self.inner.stream(messages, params), self.calls, kind)


class _TimedStream(TextStream):
    def __init__(self, inner: TextStream, calls: Calls, kind: str) -> None:
        self.inner, self.calls, self.kind = inner, calls, kind
        self.start = time.perf_counter()

    def __next__(self) -> str:
        try:
            return next(self.inner)
        except StopIteration:
            self._done()
            raise

    def close(self) -> None:
        self.inner.close()
        self._done()

    def _done(self) -> None:
        if self.stats is None and self.inner.stats is not None:
            self.stats, self.text = self.inner.stats, self.inner.text
            s = self.stats
            self.calls.add(self.kind, time.perf_counter() - self.start, s.prompt_tokens,
                           s.completion_tokens)


def raw_rates(llm, prompt_ids: list[int], decode_tokens: int = 96) -> tuple[float, float]:
    """Prefill and decode tokens/s of bare llama-cpp-python calls on ``llm``."""
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt_ids)
    prefill = len(prompt_ids) / (time.perf_counter() - start)
    made = 0
    start = time.perf_counter()
    for token in llm.generate(prompt_ids[-16:], temp=0.8, top_p=0.95, reset=True):
        made += 1
        if made == 1:
            start = time.perf_counter()  # the 16-token prompt and the first sample left out
        if made > decode_tokens or token == llm.token_eos():
            break
    decode = (made - 1) / (time.perf_counter() - start)
    llm.reset()
    return prefill, decode


def copy_db(src: Path, dst: Path) -> None:
    import sqlite3

    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def run_method(base: Path, path: Path, gen: Timed, embedder, config, user: str, method: str):
    from dpl_engine import Engine, ResultEvent, TokenEvent
    from user_store import UserStore

    copy_db(base, path)
    gen.calls = Calls()
    gen.inner.llm.reset()
    store = UserStore(path)
    try:
        engine = Engine(store, gen, embedder, config)
        target = engine.held_out_target(user)
        start = time.perf_counter()
        first = None
        result = None
        for event in engine.run(target, method):
            if isinstance(event, TokenEvent) and first is None:
                first = time.perf_counter() - start
            elif isinstance(event, ResultEvent):
                result = event.result
        total = time.perf_counter() - start
    finally:
        store.close()
    assert result is not None
    return {"first": first or total, "total": total, "calls": gen.calls, "result": result}


def grammar_share(gen: TextGenerator, prompts) -> dict[str, float]:  # noqa: ANN001
    """Each differences prompt decoded under the JSON schema and freely; tokens/s of each."""
    from dpl_engine import prompts as dpl_prompts

    json_rate, free_rate = [], []
    from models import StructuredOutputError

    for messages, params in prompts:
        gen.llm.reset()
        try:
            _, stats = gen.complete_json(
                messages, dpl_prompts.DIFFERENCES_SCHEMA, params, retries=0
            )
        except StructuredOutputError:
            continue  # cut off by the token limit: no rate to compare
        json_rate.append(stats.tokens_per_s)
        gen.llm.reset()
        stream = gen.stream(messages, replace(params, max_tokens=max(stats.completion_tokens, 8)))
        for _ in stream:
            pass
        free_rate.append(stream.stats.tokens_per_s)
    if not json_rate:
        return {"json": float("nan"), "free": float("nan"), "n": 0}
    return {
        "json": statistics.median(json_rate),
        "free": statistics.median(free_rate),
        "n": len(json_rate),
    }


def threads_table(messages, max_tokens: int) -> list[tuple[str, int, float]]:
    from models import SamplingParams
    from models.llama import load_generator

    rows = []
    for busy in (False, True):
        spinner = None
        if busy:
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for threads in (1, 2):
                gen = load_generator(n_threads=threads)
                gen.llm.reset()
                start = time.perf_counter()
                stream = gen.stream(messages, SamplingParams(max_tokens=max_tokens, seed=3))
                for _ in stream:
                    pass
                rows.append(("busy" if busy else "idle", threads, time.perf_counter() - start))
                print(rows[-1], flush=True)
                del gen
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", nargs="*", default=USERS)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--analysis-max-tokens", type=int, default=128)
    ap.add_argument("--max-review-chars", type=int, default=600)
    ap.add_argument("--skip-threads", action="store_true")
    args = ap.parse_args()

    from dpl_engine import EngineConfig
    from models import SamplingParams
    from models.embeddings import load_embedder
    from models.llama import load_generator
    from user_store import UserStore
    from user_store.ingest import ingest_files

    tmp = Path(tempfile.mkdtemp(prefix="dpl-cold-"))
    base = tmp / "base.db"
    with UserStore(base) as store:
        ingest_files(store, [DATA / "reviews.jsonl.gz"], [DATA / "meta.jsonl.gz"])
    gen = Timed(load_generator())
    embedder = load_embedder()
    config = EngineConfig(
        generation=SamplingParams(max_tokens=args.max_tokens),
        analysis=SamplingParams(max_tokens=args.analysis_max_tokens),
        max_review_chars=args.max_review_chars,
    )

    rows, first_prompts, rag_messages = [], None, None
    for user in args.users:
        rag = run_method(base, tmp / "rag.db", gen, embedder, config, user, "rag")
        cold = run_method(base, tmp / "cold.db", gen, embedder, config, user, "dpl")
        if first_prompts is None:
            first_prompts = cold["calls"].json_prompts
            rag_messages = list(rag["result"].messages)
        ids = gen.inner.llm.tokenize(
            str(cold["result"].messages[-1]["content"]).encode("utf-8"), add_bos=True
        )
        prefill, decode = raw_rates(gen.inner.llm, ids)
        c = cold["calls"]
        floor = c.prompt / prefill + c.completion / decode
        in_calls = sum(c.seconds.values())
        rows.append({
            "user": user, "rag_first": rag["first"], "cold_first": cold["first"],
            "cold_total": cold["total"], "floor": floor, "calls": sum(c.n.values()),
            "items": len(cold["result"].comparisons), "prompt": c.prompt,
            "completion": c.completion, "prefill": prefill, "decode": decode,
            "differences_s": c.seconds.get("differences", 0.0),
            "profile_s": c.seconds.get("profile", 0.0), "review_s": c.seconds.get("review", 0.0),
            "other_s": cold["total"] - in_calls, "failed": c.failed,
        })
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items()},
              flush=True)

    grammar = grammar_share(gen.inner, first_prompts or [])
    threads = [] if args.skip_threads else threads_table(rag_messages, args.max_tokens)

    table = "\n".join(
        f"| `{r['user']}` | {r['items']} | {r['calls']} | {r['prompt']:,} | {r['completion']:,} | "
        f"{r['rag_first']:.1f} s | {r['cold_first']:.1f} s | "
        f"**{r['cold_first'] / r['rag_first']:.1f}x** | {r['floor']:.1f} s | "
        f"**{r['cold_total'] / r['floor']:.2f}x** |"
        for r in rows
    )
    where = "\n".join(
        f"| `{r['user']}` | {r['differences_s']:.1f} s | {r['profile_s']:.1f} s | "
        f"{r['review_s']:.1f} s | {r['other_s']:.1f} s | {r['prefill']:.0f} / {r['decode']:.0f} | "
        f"{r['failed']} |"
        for r in rows
    )
    header = (
        "| user | comparison items | LLM calls | prompt tokens | generated tokens | `rag` to "
        "first token | cold `dpl` to first token | ratio | floor | cold total / floor |"
    )
    thread_rows = "\n".join(f"| {load} | {n} | {s:.1f} s |" for load, n, s in threads)
    report = f"""# The cold path: a `dpl` generation with nothing cached

`python benchmarks/cold_path.py` on {platform.machine()}, {os.cpu_count()} CPUs, Python \
{platform.python_version()}; {gen.model_id} in llama.cpp ({gen.info.threads} threads), \
{embedder.model_id}; k={config.k}, m={config.m}, n={config.n}; reviews cut at \
{config.max_review_chars} characters, {args.analysis_max_tokens} tokens per differences or \
profile answer, {args.max_tokens} per review. Each run on a fresh copy of the dev-data store,
llama.cpp's cache emptied first.

{header}
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{table}

The floor is the cold run's own prompt tokens at the raw prefill rate plus its generated
tokens at the raw decode rate (bare llama-cpp-python in the same run). Median cold total /
floor: **{statistics.median(r['cold_total'] / r['floor'] for r in rows):.2f}x** (target 1.2x).

Where the cold time goes:

| user | differences calls | profile | review | outside the model | raw prefill / decode | no JSON |
|---|---:|---:|---:|---:|---:|---:|
{where}

JSON grammar (the first user's differences prompts that gave valid JSON, {grammar['n']} of \
{len(first_prompts or [])}; median): \
{grammar['json']:.1f} tokens/s under the differences schema against {grammar['free']:.1f} \
tokens/s free, **{grammar['json'] / grammar['free']:.2f}x**.

Threads, one `rag` generation ({args.max_tokens} tokens):

| machine | n_threads | time |
|---|---:|---:|
{thread_rows}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
