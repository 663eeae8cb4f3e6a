"""Record real differences answers of a model, with the prompts they came from.

    python -m benchmarks.collect_differences DB OUT.json [--model PATH] [--user ID ...]

For each user the latest review is held out, and the engine's comparison items
and differences are computed as ``dpl compare`` would (defaults k=8, m=4, n=4,
seed 42; answers already cached are reused); for each item the comparison set,
the messages sent and the model's answer are written, after each user.
``tests/data/bundled_differences.json`` was made this way with the bundled model
(``--user A2EZWZ8MBEDOLN --user ADH0O8UVJOT10 --max-items 5``), then each entry
was judged informative or not by reading it against the reviews, without the checker.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

USERS = ("A2EZWZ8MBEDOLN", "ADH0O8UVJOT10", "A34O0KQV4QXWNQ")


def differences_prompt(engine, comparison) -> list[dict[str, str]]:
    """The messages ``differences.extract`` sends for this comparison (same fitting)."""
    from dpl_engine.method import prompts
    from dpl_engine.method.budget import fit

    cfg = engine.config
    others = [u.review for u in comparison.users]

    def build(limits):
        return prompts.differences_messages(
            comparison.item, comparison.user_review, others, limits, cfg.max_review_chars
        )

    messages, _ = fit(
        engine.generator,
        build,
        [len(r.text) for r in others],
        limit=cfg.max_review_chars,
        max_tokens=cfg.analysis.max_tokens,
        what=f"differences for item {comparison.item.id}",
        labels=[f"user {r.user_id}" for r in others],
    )
    return messages


def main() -> None:
    from dpl_engine import Engine
    from dpl_engine.engine import _drive, _Run
    from dpl_engine.method.cache import to_json
    from models.embeddings import load_embedder
    from models.llama import load_generator
    from user_store import UserStore

    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default=None)
    ap.add_argument("--user", action="append", default=None)
    ap.add_argument("--max-items", type=int, default=None, help="Per user, the first N items.")
    args = ap.parse_args()

    store = UserStore(args.db)
    generator = load_generator(args.model)
    engine = Engine(store, generator, load_embedder())
    records: list[dict] = []
    started = time.perf_counter()
    for user in args.user or USERS:
        target = engine.held_out_target(user)
        comparisons = engine.comparisons(target)[: args.max_items]
        # Cached answers are reused (the cache key holds every input), so a stopped run resumes.
        found = _drive(engine._differences(comparisons, _Run(None, refresh=False)), None)
        for c, d in zip(comparisons, found, strict=True):
            records.append(
                {
                    "user_id": user,
                    "item": to_json(c.item),
                    "rating": c.user_review.rating,
                    "comparison": to_json(c),
                    "messages": differences_prompt(engine, c),
                    "differences": to_json(d),
                }
            )
        out = {
            "model_id": generator.model_id,
            "seconds": round(time.perf_counter() - started, 1),
            "records": records,
        }
        text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
        args.out.write_text(text, encoding="utf-8")
        print(f"{user}: {len(found)} answers ({out['seconds']} s)", flush=True)
    store.close()


if __name__ == "__main__":
    main()
