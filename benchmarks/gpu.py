"""GPU offload against CPU-only generation on the same model and prompt, in one run,
plus a cold DPL pipeline for one dev-data user on the GPU.

    python -m benchmarks.gpu [--model PATH] [--reps 3] [--max-tokens 128]
                             [--pipeline/--no-pipeline] [--pipeline-cpu]
                             [--out FILE.md] [--json FILE.json]

Prints the device name with the results. Where llama.cpp has no GPU support, or no
GPU is visible, the GPU rows are reported as skipped with the reason and the CPU
rows still run. Each section is written to the output files as soon as it finishes,
so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import tempfile
import time
import traceback
from dataclasses import asdict, is_dataclass
from pathlib import Path

from benchmarks.common import DATA, RESULTS_DIR, timed_run, write_results

FALLBACK_PROMPT = [
    {"role": "system", "content": "You write product reviews in the voice of one customer."},
    {
        "role": "user",
        "content": "Write a detailed review of a set of phosphor-bronze acoustic "
        "guitar strings, rated 4 out of 5, titled 'Warm tone, slightly short life'.",
    },
]


def device_report() -> dict:
    from benchmarks.generation import cpu_name
    from models.gpu import nvidia_devices, supports_gpu_offload

    devices = nvidia_devices()
    return {
        "llama_cpp_gpu_build": supports_gpu_offload(),
        "devices": [asdict(d) for d in devices],
        "device_name": devices[0].name if devices else "none visible",
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def prompt_messages() -> tuple[list[dict], str]:
    if not (DATA / "reviews.jsonl.gz").exists():
        return FALLBACK_PROMPT, "fixed prompt (dev data not found)"
    from benchmarks.generation import load_reviews, review_prompt

    return review_prompt(load_reviews()), "review prompt from a real dev-data user"


def measure(n_gpu_layers: int, model: str | None, messages, reps: int, max_tokens: int) -> dict:
    from models import SamplingParams
    from models.gpu import nvidia_devices
    from models.llama import load_generator

    start = time.perf_counter()
    gen = load_generator(model, n_gpu_layers=n_gpu_layers)
    load_s = time.perf_counter() - start
    if n_gpu_layers != 0 and not gen.offload.active:
        return {"skipped": "; ".join(gen.warnings) or "no layers were offloaded"}
    vram = nvidia_devices()
    gen.complete(messages, SamplingParams(max_tokens=8, seed=0))  # warm-up
    runs = []
    for rep in range(reps):
        gen.llm.reset()  # every run pays for its prompt
        _, stats = gen.complete(messages, SamplingParams(max_tokens=max_tokens, seed=100 + rep))
        runs.append(stats)
    result = {
        "n_gpu_layers": n_gpu_layers,
        "layers_offloaded": gen.offload.layers_offloaded,
        "layers_total": gen.offload.layers_total,
        "device": gen.info.device,
        "offload_summary": gen.offload.summary(),
        "warnings": gen.warnings,
        "load_s": load_s,
        "prompt_tokens": runs[0].prompt_tokens,
        "completion_tokens": statistics.median(r.completion_tokens for r in runs),
        "tokens_per_s": statistics.median(r.tokens_per_s for r in runs),
        "ttft_ms": statistics.median(r.time_to_first_token_s for r in runs) * 1000,
        "runs": [asdict(r) for r in runs],
        "vram_after_load": [asdict(d) for d in vram],
        "model_id": gen.info.model_id,
    }
    del gen
    return result


def cold_pipeline(n_gpu_layers: int, model: str | None) -> dict:
    """Fresh store from the dev data, models loaded on first use, one user's DPL review."""
    if not (DATA / "reviews.jsonl.gz").exists():
        return {"skipped": f"dev data not found at {DATA} (set DPL_SHARED_DATA)"}
    try:
        from dpl_engine.engine import Engine
        from user_store import UserStore
        from user_store.types import Item, Review
    except Exception as err:  # noqa: BLE001 - report what is missing and go on
        return {"skipped": f"engine or store not importable: {err!r}"}
    from models.embeddings import load_embedder
    from models.llama import load_generator

    with tempfile.TemporaryDirectory() as home:
        os.environ["DPL_HOME"] = home
        t0 = time.perf_counter()
        try:
            store = UserStore(Path(home) / "dpl.db")
            with gzip.open(DATA / "meta.jsonl.gz", "rt", encoding="utf-8") as fh:
                metas = [json.loads(line) for line in fh]
            store.upsert_items(
                Item(
                    id=m["parent_asin"],
                    title=m.get("title") or m["parent_asin"],
                    description=" ".join(m.get("description") or []),
                    categories=tuple(m.get("categories") or ()),
                    metadata_missing=bool(m.get("metadata_missing")),
                )
                for m in metas
            )
            with gzip.open(DATA / "reviews.jsonl.gz", "rt", encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh]
            store.upsert_reviews(
                Review(
                    user_id=r["user_id"],
                    item_id=r["parent_asin"],
                    rating=float(r["rating"]),
                    title=r.get("title") or "",
                    text=r.get("text") or "",
                    timestamp=int(r["timestamp"]),
                    helpful_votes=int(r.get("helpful_vote", 0)),
                    source="amazon14-mi5",
                )
                for r in rows
            )
            ingest_s = time.perf_counter() - t0
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["user_id"]] = counts.get(r["user_id"], 0) + 1
            user = max(sorted(counts), key=counts.__getitem__)
            loaded: dict[str, object] = {}

            def generator():
                loaded["generator"] = load_generator(model, n_gpu_layers=n_gpu_layers)
                return loaded["generator"]

            engine = Engine(store, generator, load_embedder)
            target = engine.held_out_target(user)
            run = timed_run(engine, target, "dpl")
            result = run.result
        except (NotImplementedError, AttributeError, TypeError) as err:
            return {"skipped": f"engine not ready: {err!r}", "trace": traceback.format_exc(limit=3)}
        gen = loaded.get("generator")
        return {
            "user_id": user,
            "reviews_of_user": counts[user],
            "ingest_s": ingest_s,
            "pipeline_s": run.seconds,
            "first_review_token_s": run.first_token_s,
            "llm_calls": getattr(result, "llm_calls", None),
            "review_chars": len(getattr(result, "text", "") or ""),
            "final_stats": _plain(getattr(result, "stats", None)),
            "device": getattr(getattr(gen, "info", None), "device", "?"),
            "offload": getattr(getattr(gen, "offload", None), "summary", lambda: "?")(),
        }


def _plain(value):
    return asdict(value) if is_dataclass(value) else value


def render(report: dict) -> str:
    dev = report["device"]
    lines = [
        "# GPU offload benchmark",
        "",
        f"Device: **{dev['device_name']}**; llama.cpp GPU build: {dev['llama_cpp_gpu_build']}; "
        f"CPU: {dev['cpu']} ({dev['cpus']} CPUs); Python {dev['python']}.",
        f"Prompt: {report.get('prompt', '')}; max_tokens {report['max_tokens']}, "
        f"{report['reps']} repetitions (seeds 100..), KV cache cleared before each.",
        "",
        "| | layers offloaded | tokens/s (median) | TTFT ms (median) | load s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("gpu", "cpu"):
        row = report.get(name)
        if row is None:
            continue
        if "skipped" in row:
            lines.append(f"| {name.upper()} | skipped: {row['skipped']} | | | |")
            continue
        lines.append(
            f"| {name.upper()} ({row['device']}) | {row['layers_offloaded']}/"
            f"{row['layers_total']} | {row['tokens_per_s']:.1f} | {row['ttft_ms']:.1f} | "
            f"{row['load_s']:.2f} |"
        )
    gpu, cpu = report.get("gpu") or {}, report.get("cpu") or {}
    if "tokens_per_s" in gpu and "tokens_per_s" in cpu:
        lines += [
            "",
            f"GPU / CPU: tokens/s x{gpu['tokens_per_s'] / cpu['tokens_per_s']:.2f}, "
            f"time to first token x{cpu['ttft_ms'] / gpu['ttft_ms']:.2f} faster.",
        ]
    for name in ("pipeline_gpu", "pipeline_cpu"):
        pipe = report.get(name)
        if pipe is None:
            continue
        lines += ["", f"## Cold DPL pipeline, one dev-data user ({name.split('_')[1].upper()})", ""]
        if "skipped" in pipe:
            lines.append(f"Skipped: {pipe['skipped']}")
            continue
        lines.append(
            f"User {pipe['user_id']} ({pipe['reviews_of_user']} reviews); ingest into a fresh "
            f"store {pipe['ingest_s']:.1f} s; retrieval, selection, differences, profile and "
            f"the streamed review {pipe['pipeline_s']:.1f} s (first review token at "
            f"{pipe['first_review_token_s'] or float('nan'):.1f} s), {pipe['llm_calls']} LLM "
            f"calls, on {pipe['device']} ({pipe['offload']})."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF file (default: the bundled model)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--pipeline-cpu",
        action="store_true",
        help="also run the cold pipeline CPU-only, for comparison",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gpu.md")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    report: dict = {"device": device_report(), "max_tokens": args.max_tokens, "reps": args.reps}
    print(
        f"device: {report['device']['device_name']} "
        f"(llama.cpp GPU build: {report['device']['llama_cpp_gpu_build']})",
        flush=True,
    )

    def save() -> None:
        write_results(args.out, render(report), echo=False)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")

    messages, report["prompt"] = prompt_messages()
    steps = [
        ("gpu", lambda: measure(-1, args.model, messages, args.reps, args.max_tokens)),
        ("cpu", lambda: measure(0, args.model, messages, args.reps, args.max_tokens)),
    ]
    if args.pipeline:
        steps.append(("pipeline_gpu", lambda: cold_pipeline(-1, args.model)))
    if args.pipeline_cpu:
        steps.append(("pipeline_cpu", lambda: cold_pipeline(0, args.model)))
    for name, step in steps:
        if name.endswith("gpu") and not report["device"]["llama_cpp_gpu_build"]:
            report[name] = {"skipped": "llama-cpp-python was built without GPU support"}
        else:
            try:
                report[name] = step()
            except Exception as err:  # noqa: BLE001 - keep the other sections
                report[name] = {"skipped": f"failed: {err}", "trace": traceback.format_exc()}
        print(f"{name}: {json.dumps(report[name], default=str)[:400]}", flush=True)
        save()
    print(render(report))


if __name__ == "__main__":
    main()
