"""Token ids of a few short prompts under the bundled model's tokenizer, for export checks
on machines without llama.cpp (scripts/gpu-tune.sh)."""

from __future__ import annotations

import json
from pathlib import Path

PROMPTS = (
    "I bought this guitar strap last week and",
    "The sound quality of these strings is",
    "Review of a capo: it clamps",
)


def write(path: str) -> None:
    from models.llama import load_generator

    gen = load_generator()
    Path(path).write_text(json.dumps([gen.text_token_ids(p) for p in PROMPTS]))
