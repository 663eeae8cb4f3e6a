"""Shown when the database is empty (or cannot be opened): import the bundled sample,
or import your own reviews with ``dpl ingest``."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Button, Footer, Header, LoadingIndicator, Static

from ..widgets.status import StatusBar
from .base import DplScreen


class WelcomeScreen(DplScreen):
    BINDINGS = [Binding("i", "import_sample", "Import sample")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Center(), Vertical(id="welcome"):
            yield Static("Welcome to dpl", id="welcome-title")
            yield Static("", id="welcome-text", markup=False)
            yield Button("Import the bundled sample", id="import-sample", variant="primary")
            yield LoadingIndicator(id="importing")
            yield Static("", id="welcome-command", markup=False)
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Welcome"
        app = self.dpl
        self.query_one("#importing").display = False
        text = Text()
        if app.store is None:
            text.append("The database could not be opened:\n", "bold red")
            text.append(f"{app.store_problem}\n\n")
            self.query_one("#import-sample", Button).disabled = True
        else:
            text.append(f"The database {str(app.db_path)!r} has no reviews yet.\n\n")
            text.append(
                "Import the small sample that ships with dpl to look around, "
                "or import your own review history from a terminal:"
            )
        self.query_one("#welcome-text", Static).update(text)
        if app.store is None:  # nothing can be imported into it: no command to copy
            self.query_one("#welcome-command").display = False
            self.query_one("#import-sample").display = False
            self.refresh_bindings()
            return
        self.query_one("#welcome-command", Static).update(
            Text(
                f"dpl ingest REVIEWS.jsonl[.gz] [--meta META.jsonl[.gz]] --db {app.db_path}",
                style="bold",
            )
        )
        self.query_one("#import-sample", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """No import key where the database cannot be opened."""
        if action == "import_sample" and self.dpl.store is None:
            return False
        return True

    @on(Button.Pressed, "#import-sample")
    def action_import_sample(self) -> None:
        if self.dpl.store is None:
            return
        self.query_one("#import-sample", Button).disabled = True
        self.query_one("#importing").display = True
        self.dpl.import_sample()

    def import_failed(self, error: str) -> None:
        self.query_one("#import-sample", Button).disabled = False
        self.query_one("#importing").display = False
