"""The typer options that several commands share, with one help text each.

An option that only one command takes stays beside that command; one whose help differs
between commands (``dpl eval``'s --k says "default 8", ``dpl generate``'s the saved setting)
is that command's own too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# -- the store and the models ----------------------------------------------------------------
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="SQLite database to use (default: $DPL_HOME/dpl.db or the user data dir).",
        dir_okay=False,
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="GGUF file or registered model name (default: $DPL_MODEL, the "
        "saved setting, or the bundled SmolLM2-135M-Instruct).",
    ),
]
AdapterOption = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="LoRA adapter (a name from `dpl tune` or an adapter .gguf) applied to the "
        "review-writing call (default: $DPL_ADAPTER, else none).",
    ),
]
PersonalOption = Annotated[
    bool,
    typer.Option(
        "--personal/--no-personal",
        help="With a task adapter, write each user's reviews with their own per-user adapter "
        "on top where `dpl tune --user` kept one.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# -- the method ------------------------------------------------------------------------------
PresetOption = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="'dpl' (dpl's retrieval, clustering and JSON differences) or 'paper' (the "
        "published method's choices). Default: the saved setting, 'dpl'.",
    ),
]
KOption = Annotated[
    int | None, typer.Option("--k", help="Past reviews to retrieve (default: saved setting, 8).")
]
MOption = Annotated[
    int | None,
    typer.Option("--m", help="Other reviewers an item needs to be compared (default: saved, 4)."),
]
NOption = Annotated[
    int | None,
    typer.Option("--n", help="Representative users per item (default: saved setting, 4)."),
]
MaxTokensOption = Annotated[
    int | None, typer.Option("--max-tokens", help="Tokens per generated review (default 384).")
]
AnalysisTokensOption = Annotated[
    int | None,
    typer.Option(
        "--analysis-max-tokens", help="Tokens per differences/profile call (default 320)."
    ),
]
ReviewCharsOption = Annotated[
    int | None,
    typer.Option("--max-review-chars", help="Shorten reviews in prompts to this (default 1500)."),
]

# -- the evaluation split's thresholds ---------------------------------------------------------
MinCharsOption = Annotated[
    int | None,
    typer.Option("--min-chars", help="Drop reviews with shorter text (paper: 200)."),
]
MinUserOption = Annotated[
    int | None,
    typer.Option(
        "--min-user-reviews", help="Keep users with at least this many reviews (paper: 18)."
    ),
]
MaxUserOption = Annotated[
    int | None,
    typer.Option("--max-user-reviews", help="Drop users with more reviews than this (paper: 500)."),
]
MinItemOption = Annotated[
    int | None,
    typer.Option(
        "--min-item-reviewers", help="Keep items with at least this many reviewers (paper: 8)."
    ),
]
