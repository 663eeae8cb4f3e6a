"""An evaluation slice in-process against the same slice through an LLM server.

The same users, model, methods and seeds, run by ``dpl_engine.evaluation.runner`` once with
the bundled GGUF loaded in-process (llama.cpp) and then through llama-cpp-python's
OpenAI-compatible server (``python -m llama_cpp.server``, the same GGUF, same
threads and context) at evaluation concurrency 1, 2, 4 and 8, each on a fresh
copy of the database so nothing is cached between configurations. Reported:
generations per second, the ratio to in-process, the server's slot count, and
whether each configuration wrote the same texts as the in-process run.

    python -m benchmarks.server [--users 4] [--methods none,rag] [--max-tokens 48]

Writes benchmarks/results/server.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import (
    RESULTS_DIR,
    SERVED,
    ServerFailed,
    copy_db,
    dev_store,
    llama_cpp_server,
    write_results,
)

RESULTS = RESULTS_DIR / "server.md"
CONCURRENCY = (1, 2, 4, 8)


def run_slice(master: Path, workdir: Path, label: str, generator, cfg, concurrency: int):
    from dpl_engine.evaluation import runner as ev
    from dpl_engine.evaluation import split as sp
    from models.embeddings import load_embedder
    from models.registry import DEFAULT_EMBEDDER_ID
    from user_store import UserStore

    db = copy_db(master, workdir / f"{label}.db")
    with UserStore(db) as store:
        split = sp.prepare(
            store, sp.SplitParams(min_chars=200, min_user_reviews=6, min_item_reviewers=3)
        )
        # The embedder is handed over unloaded, as `dpl eval` does: none and rag never embed,
        # so it never loads, and torch stays out of the timing.
        runner = ev.Evaluation(
            store, split, generator, load_embedder, cfg, embedder_id=DEFAULT_EMBEDDER_ID
        )
        plan = runner.plan()
        started = time.perf_counter()
        runner.execute(plan, concurrency=concurrency)
        seconds = time.perf_counter() - started
        rows = runner.evals.results(plan.run.id)
        texts = {(r.user_id, r.method, r.seed): r.text for r in rows}
    return seconds, len(rows), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--methods", default="none,rag")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--k", type=int, default=4, help="past reviews in each rag prompt")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    from dpl_engine import EngineConfig
    from dpl_engine.evaluation import runner as ev
    from models.llama import default_threads, load_generator
    from models.registry import default_gguf_path
    from models.server import ServerConfig, connect

    gguf = default_gguf_path()
    threads = default_threads()
    n_ctx = 8192
    methods = tuple(m for m in args.methods.split(",") if m)
    base = EngineConfig()
    cfg = ev.EvalConfig(
        methods=methods,  # type: ignore[arg-type]
        seeds=(args.seed,),
        users=args.users,
        engine=replace(
            base, k=args.k, generation=replace(base.generation, max_tokens=args.max_tokens)
        ),
    )
    results: list[tuple[str, int, float, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="dpl-server-bench-") as tmp:
        work = Path(tmp)
        master = dev_store(work / "mi5.db")

        local = load_generator(gguf, n_ctx=n_ctx, n_threads=threads)
        seconds, n, reference = run_slice(master, work, "inprocess", local, cfg, 1)
        results.append(("in-process llama.cpp", 1, seconds, n, n))
        print(f"in-process: {n} generations in {seconds:.1f} s", flush=True)
        local.llm.close()
        del local

        slots = None
        server = llama_cpp_server(work / "server.log", gguf=gguf, threads=threads, n_ctx=n_ctx)
        try:
            with server as url:
                for c in CONCURRENCY:
                    gen = connect(
                        ServerConfig(
                            name="bench",
                            url=url,
                            model=SERVED,
                            context_length=n_ctx,
                            concurrency=c,
                            timeout_s=600,
                        )
                    )
                    slots = gen.slots
                    seconds, n, texts = run_slice(master, work, f"server-c{c}", gen, cfg, c)
                    same = sum(1 for k, t in texts.items() if reference.get(k) == t)
                    results.append((f"server, --concurrency {c}", c, seconds, n, same))
                    print(
                        f"server c={c}: {n} generations in {seconds:.1f} s, {same} same texts",
                        flush=True,
                    )
                    gen.close()
        except ServerFailed as err:
            raise SystemExit(str(err)) from None
    load = (load_before, os.getloadavg()[0])
    write(results, args, methods, threads, n_ctx, slots, load)


def write(results, args, methods, threads, n_ctx, slots, load) -> None:
    import llama_cpp

    base_rate = results[0][3] / results[0][2]
    lines = [
        "# Evaluation slice: in-process llama.cpp against an LLM server",
        "",
        f"`python -m benchmarks.server --users {args.users} --methods {','.join(methods)} "
        f"--max-tokens {args.max_tokens} --k {args.k}`",
        "",
        f"- Data: amazon14-mi5 dev set, split with --min-chars 200 --min-user-reviews 6 "
        f"--min-item-reviewers 3; the first {args.users} users of the evaluation order; "
        f"methods {', '.join(methods)}; seed {args.seed}; k {args.k}; generation max_tokens "
        f"{args.max_tokens}.",
        f"- Model: SmolLM2-135M-Instruct Q4_1 (the bundled GGUF), n_ctx {n_ctx}, {threads} "
        f"threads, llama-cpp-python {llama_cpp.__version__}, CPU only.",
        "- Server: llama-cpp-python's `python -m llama_cpp.server` on 127.0.0.1, same GGUF, "
        "threads and context. Slots: "
        + (
            f"{slots} (its /props)."
            if slots
            else "1: this server runs one request at a time "
            "(one model behind a lock) and reports no slot count; requests beyond it queue."
        ),
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs visible; load average "
        f"{load[0]:.1f} before the run and {load[1]:.1f} at the end (the run's own model "
        "included).",
        "- Each configuration runs on a fresh copy of the database (nothing cached); "
        "--concurrency N is `dpl eval --concurrency N` (N users at once, and N calls per "
        "target's differences).",
        "",
        "| configuration | generations | seconds | generations / s | ratio to in-process "
        "| same texts as in-process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, _c, seconds, n, same in results:
        rate = n / seconds
        lines.append(
            f"| {label} | {n} | {seconds:.1f} | {rate:.3f} | {rate / base_rate:.2f} "
            f"| {same} of {n} |"
        )
    lines += [
        "",
        "What limits this machine: two CPU cores run both the model and everything "
        "else, and the server here has one slot, so concurrency can only overlap a request's "
        "HTTP and prompt-building time with another's generation; it cannot add compute. The "
        "gain from concurrency needs a server with several slots on hardware that has room "
        "for them (llama-server --parallel N, vLLM on a GPU).",
        "",
        "GPU: none was available for this run, so no figures with CUDA offload are given.",
        "",
    ]
    write_results(RESULTS, "\n".join(lines), echo=False)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
