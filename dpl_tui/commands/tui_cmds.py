"""``dpl tui`` / ``dpl-tui``: open the Textual app."""

from __future__ import annotations

import typer

from ..common import DbOption, ModelOption, user_errors


def tui(db: DbOption = None, model: ModelOption = None) -> None:
    """Open the app on the given or default database."""
    with user_errors():
        from ..app import DplApp

        DplApp(db_path=db, model=model).run()


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
