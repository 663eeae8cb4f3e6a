"""``dpl tui`` / ``dpl-tui``: open the Textual app."""

from __future__ import annotations

import os
import sys

import typer

from ..common import user_errors
from .options import DbOption, ModelOption


def tui(db: DbOption = None, model: ModelOption = None) -> None:
    """Open the app on the given or default database."""
    with user_errors():
        from ..app import DplApp

        app = DplApp(db_path=db, model=model)
        app.run()
        if app.store is not None:
            app.store.close()
    if app.loading_models:
        # Quit while the models were still loading: that thread cannot be stopped (it may be
        # inside `import torch`) and tearing the interpreter down around it is not safe, so
        # leave at once. The terminal is restored and the store closed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(app.return_code or 0)


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
