"""The ``dpl`` command line (typer) and the ``dpl-tui`` entry point.

Command modules live in ``dpl_tui/commands``; each imports heavy libraries
only inside its commands, so ``dpl --help`` stays fast.
"""

from __future__ import annotations

import typer

from .commands import (
    engine_cmds,
    eval_cmds,
    ingest_cmds,
    model_cmds,
    prepare_cmds,
    tui_cmds,
    tune_cmds,
)

app = typer.Typer(
    name="dpl",
    help="Difference-aware personalization: import review histories, compare users, "
    "and generate personalized reviews with a local model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: the rich formatter costs 0.1 s per start
)


@app.callback()
def _root() -> None:
    """Difference-aware personalization of reviews, on local data and local models."""


for module in (ingest_cmds, model_cmds, engine_cmds, prepare_cmds, eval_cmds, tune_cmds, tui_cmds):
    module.register(app)


def main() -> None:
    app()


def tui_main() -> None:
    """``dpl-tui [--db PATH] [--model PATH]``"""
    typer.run(tui_cmds.tui)
