"""A differences answer cut off at its token limit: retried with the same limit or twice it.

For each dev-data user (latest review held out, nothing cached), the engine's differences
step runs both ways on the same loaded model, alternating, with the same seeds: the first
attempts are the same text, only the retries differ. Reported per way: the answers kept as
JSON (the rest fall back to free text), the calls made, the tokens written and the seconds.

    python -m benchmarks.retry_limit [--users ID ...] [--settings 128:0.8 64:0.8 128:0]

Writes benchmarks/results/retry-limit.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, dev_setup, timed_differences, write_results
from models import GenerationStats, StructuredOutputError, TextGenerator

RESULTS = RESULTS_DIR / "retry-limit.md"
USERS = [
    "A34O0KQV4QXWNQ",
    "ADH0O8UVJOT10",
    "A2EZWZ8MBEDOLN",
    "A1L7M2JXN4EZCR",
    "A15TYOEWBQYF0X",
    "A2NYK9KWFMJV4Y",
]
WAYS = {"same limit": 1, "twice the limit": 2}


class Counted(TextGenerator):
    """The real model with its JSON calls' attempts and tokens added up."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner, self.info, self.concurrency = inner, inner.info, inner.concurrency
        self.attempts = self.written = self.first_failed = 0

    def count_tokens(self, messages):  # noqa: ANN001, ANN201
        return self.inner.count_tokens(messages)

    def stream(self, messages, params):  # noqa: ANN001, ANN201
        return self.inner.stream(messages, params)

    def complete_json(self, messages, schema, params, *, retries=1, stop=None):  # noqa: ANN001, ANN201
        try:
            value, stats = self.inner.complete_json(
                messages, schema, params, retries=retries, stop=stop
            )
        except StructuredOutputError as err:
            assert err.stats is not None  # in-process llama.cpp reports every attempt
            self._add(err.stats, failed=True)
            raise
        self._add(stats, failed=False)
        return value, stats

    def _add(self, stats: GenerationStats, *, failed: bool) -> None:
        self.attempts += stats.attempts
        self.written += stats.completion_tokens
        self.first_failed += failed or stats.attempts > 1


def differences_once(base: Path, path: Path, gen, embedder, config, user: str) -> dict:  # noqa: ANN001
    model = Counted(gen)
    found, seconds = timed_differences(base, path, model, embedder, config, user)
    return {
        "seconds": seconds,
        "answers": len(found),
        "json": sum(d.structured for d in found),
        "attempts": model.attempts,
        "first failed": model.first_failed,
        "written": model.written,
    }


def table(base: Path, tmp: Path, gen, embedder, config, users: list[str]) -> list[str]:  # noqa: ANN001
    """One setting's rows: per user, then all together."""
    from models import structured

    growth = structured.RETRY_GROWTH
    totals = {
        way: {"answers": 0, "json": 0, "attempts": 0, "written": 0, "seconds": 0.0} for way in WAYS
    }
    rows = []
    try:
        for user in users:
            runs = {}
            for way, factor in WAYS.items():
                structured.RETRY_GROWTH = factor
                runs[way] = differences_once(base, tmp / "run.db", gen, embedder, config, user)
                print(user, config.analysis, way, runs[way], flush=True)
                for key in totals[way]:
                    totals[way][key] += runs[way][key]
            same, grown = runs["same limit"], runs["twice the limit"]
            rows.append(
                f"| `{user}` | {same['answers']} | {same['first failed']} "
                f"| {same['json']} / {grown['json']} | {same['attempts']} / {grown['attempts']} "
                f"| {same['written']:,} / {grown['written']:,} "
                f"| {same['seconds']:.1f} / {grown['seconds']:.1f} s |"
            )
    finally:
        structured.RETRY_GROWTH = growth
    same, grown = totals["same limit"], totals["twice the limit"]
    rows.append(
        f"| all | {same['answers']} | | **{same['json']} / {grown['json']}** "
        f"| {same['attempts']} / {grown['attempts']} "
        f"| {same['written']:,} / {grown['written']:,} "
        f"| {same['seconds']:.1f} / {grown['seconds']:.1f} s "
        f"({grown['seconds'] / same['seconds']:.2f}x) |"
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", nargs="*", default=USERS)
    ap.add_argument(
        "--settings",
        nargs="*",
        default=["128:0.8", "64:0.8", "128:0"],
        help="answer token limit and temperature, one table each (default: %(default)s)",
    )
    ap.add_argument("--max-review-chars", type=int, default=600)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    from dpl_engine import EngineConfig
    from models import SamplingParams

    tmp, base, gen, embedder = dev_setup("dpl-retry-")
    sections = []
    for setting in args.settings:
        limit, temperature = setting.split(":")
        analysis = SamplingParams(
            max_tokens=int(limit), temperature=float(temperature), seed=args.seed
        )
        config = EngineConfig(analysis=analysis, max_review_chars=args.max_review_chars)
        sections += [
            f"## {analysis.max_tokens}-token answers, temperature {analysis.temperature:g}",
            "",
            "| user | answers | first answer failed | kept as JSON | calls | tokens written "
            "| seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *table(base, tmp, gen, embedder, config, args.users),
            "",
        ]

    text = "\n".join(
        [
            "# A cut-off differences answer retried with the same token limit or twice it",
            "",
            f"`python -m benchmarks.retry_limit --settings {' '.join(args.settings)}` on "
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"{gen.model_id} ({gen.info.threads} threads); the engine's differences step (seed "
            f"{args.seed}, top_p 0.95), nothing cached; {time.strftime('%Y-%m-%d')}. Both ways "
            "run on the same loaded model, alternating per user; their first attempts are the "
            "same text.",
            "",
            'Each cell: same limit / twice the limit. "First answer failed" counts the '
            'answers whose first attempt gave no valid JSON (the same in both ways); "kept as '
            'JSON" the answers that end as JSON, the rest fall back to free text. At '
            "temperature 0 a retry with the same limit would write the first answer again, so "
            "that way makes none.",
            "",
            *sections,
        ]
    )
    write_results(RESULTS, text)


if __name__ == "__main__":
    main()
