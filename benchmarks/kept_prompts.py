"""A user's differences calls with their prompts kept in the JSON context against read whole.

On the CPU the JSON context keeps a finished call's prompt (``SideBySideSettings.keep_prompts``):
a retry of an answer cut off by its token limit reads only its last prompt batch again. For
each dev-data user (latest review held out, nothing
cached), the engine's differences step runs both ways on the same loaded model, alternating,
with the same seeds (so the same answers and the same retries): seconds, prompt tokens the
calls count, and prompt tokens not read again.

    python -m benchmarks.kept_prompts [--users ID ...] [--reps 1]

Writes benchmarks/results/kept-prompts.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import RESULTS_DIR, dev_setup, timed_differences, write_results

RESULTS = RESULTS_DIR / "kept-prompts.md"
USERS = ["A34O0KQV4QXWNQ", "ADH0O8UVJOT10", "A2EZWZ8MBEDOLN"]
WAYS = ("read whole", "kept")


def differences_once(base: Path, path: Path, gen, embedder, config, user: str) -> dict:  # noqa: ANN001
    side = gen.side_by_side
    reused, sampled = side.reused, side.sampled
    found, seconds = timed_differences(base, path, gen, embedder, config, user)
    return {
        "seconds": seconds,
        "reused": side.reused - reused,
        "tokens": side.sampled - sampled,
        "texts": [d.raw for d in found],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", nargs="*", default=USERS)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--analysis-max-tokens", type=int, default=128)
    ap.add_argument("--max-review-chars", type=int, default=600)
    args = ap.parse_args()

    from dpl_engine import EngineConfig
    from models import SamplingParams

    tmp, base, gen, embedder = dev_setup("dpl-kept-")
    config = EngineConfig(
        analysis=SamplingParams(max_tokens=args.analysis_max_tokens, seed=42),
        max_review_chars=args.max_review_chars,
    )
    side = gen.side_by_side
    settings = side.settings
    rows = []
    for user in args.users:
        runs: dict[str, list[dict]] = {way: [] for way in WAYS}
        for _ in range(args.reps):
            for way in WAYS:
                side.settings = replace(settings, keep_prompts=way == "kept")
                runs[way].append(
                    differences_once(base, tmp / "run.db", gen, embedder, config, user)
                )
                print(
                    user, way, {k: v for k, v in runs[way][-1].items() if k != "texts"}, flush=True
                )
        whole = statistics.median(r["seconds"] for r in runs["read whole"])
        kept = statistics.median(r["seconds"] for r in runs["kept"])
        same = all(
            a["texts"] == b["texts"] for a, b in zip(runs["read whole"], runs["kept"], strict=True)
        )
        rows.append(
            f"| `{user}` | {runs['kept'][0]['tokens']} | {runs['kept'][0]['reused']:,} "
            f"| {whole:.1f} s | {kept:.1f} s | **{whole / kept:.2f}x** "
            f"| {'yes' if same else 'no'} |"
        )
    side.settings = settings

    text = "\n".join(
        [
            "# Differences calls with their prompts kept against read whole",
            "",
            f"`python -m benchmarks.kept_prompts --reps {args.reps}` on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {gen.model_id} "
            f"({gen.info.threads} threads); the engine's differences step (8 calls and their "
            f"retries, {args.analysis_max_tokens} tokens each, seed 42), nothing cached; "
            f"{time.strftime('%Y-%m-%d')}. Median of {args.reps} round(s), the two ways "
            "alternating.",
            "",
            "| user | tokens written | prompt tokens not read again | read whole | kept "
            "| speed-up | same answers |",
            "|---|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )
    write_results(RESULTS, text)


if __name__ == "__main__":
    main()
