"""Check an adapter trained elsewhere (a GPU machine, by ``benchmarks.tune --check-ids``)
against llama.cpp here: the logit changes it causes must match the ones transformers saw.

    python -m benchmarks.tune_check DIR     # DIR holds check.gguf, check.npz and ids.json

Appends the result to benchmarks/results/tune.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR

RESULTS = RESULTS_DIR / "tune.md"


def main() -> None:
    from models.adapters import inspect_adapter
    from models.llama import load_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="holds check.gguf, check.npz and ids.json")
    folder = parser.parse_args().folder
    ids = json.loads((folder / "ids.json").read_text())
    expected = np.load(folder / "check.npz")
    base = load_generator()
    adapter = inspect_adapter(folder / "check.gguf")
    adapted = base.with_adapter(folder / "check.gguf")
    device = adapter.meta.get("device", "?")
    precision = " (bfloat16 autocast)" if device == "cuda" else ""
    lines = [
        "",
        f"## An adapter trained on {device}{precision}, applied by llama.cpp here",
        "",
        "| prompt tokens | correlation of logit changes | slope (llama.cpp on transformers) |",
        "|---:|---:|---:|",
    ]
    for i, prompt in enumerate(ids):
        there = expected[f"p{i}"]
        here = np.array(adapted.next_token_logits(prompt)) - np.array(
            base.next_token_logits(prompt)
        )
        corr = float(np.corrcoef(there, here)[0, 1])
        slope = float(np.dot(there, here) / np.dot(there, there))
        lines.append(f"| {len(prompt)} | {corr:.4f} | {slope:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
