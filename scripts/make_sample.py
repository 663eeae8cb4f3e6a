"""Build the sample bundled in ``user_store/sample/`` from the amazon14-mi5 dev set.

The sample is a dense corner of the data: the users of the iterative core in which
every user has at least ``--min-user`` reviews and every item at least ``--min-item``
reviewers (counting only core reviews), with each such user's complete history. So
every sample user has items that at least ``--min-item - 1`` other sample users also
reviewed: what DPL compares against. Lines keep the source order and bytes, and the
gzip header carries no timestamp, so the output is byte-for-byte reproducible.

    python scripts/make_sample.py [--source ../shared/data/amazon14-mi5/reviews.jsonl.gz]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "amazon14-mi5" / "reviews.jsonl.gz"
DEFAULT_OUT = REPO / "user_store" / "sample" / "reviews.jsonl.gz"


def core_users(pairs: list[tuple[str, str]], min_user: int, min_item: int) -> set[str]:
    """Users left after repeatedly dropping users and items below the thresholds."""
    while True:
        per_user = Counter(u for u, _ in pairs)
        per_item = Counter(i for _, i in pairs)
        kept = [(u, i) for u, i in pairs if per_user[u] >= min_user and per_item[i] >= min_item]
        if len(kept) == len(pairs):
            return {u for u, _ in kept}
        pairs = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--min-user", type=int, default=6)
    parser.add_argument("--min-item", type=int, default=5)
    args = parser.parse_args()

    with gzip.open(args.source, "rb") as f:
        lines = [line for line in f if line.strip()]
    records = [json.loads(line) for line in lines]
    users = core_users(
        [(r["user_id"], r["parent_asin"]) for r in records], args.min_user, args.min_item
    )
    chosen = [line for line, r in zip(lines, records, strict=True) if r["user_id"] in users]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(args.out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        for line in chosen:
            gz.write(line if line.endswith(b"\n") else line + b"\n")

    items = {json.loads(line)["parent_asin"] for line in chosen}
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(
        f"{args.out}: {len(users)} users, {len(items)} items, {len(chosen)} reviews, "
        f"{args.out.stat().st_size:,} bytes, sha256 {digest}"
    )


if __name__ == "__main__":
    main()
