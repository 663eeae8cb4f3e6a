"""Progress of a long engine step: which step, i of n, and whether it came from the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

if TYPE_CHECKING:
    from dpl_engine import ProgressEvent

STEP_NAMES = {
    "retrieve": "Retrieving past reviews",
    "embed": "Embedding reviews",
    "compare": "Choosing comparison users",
    "measure": "Measuring differences (no model)",
    "differences": "Extracting differences",
    "profile": "Summarizing the profile",
    "generate": "Generating",
}


def describe(event: ProgressEvent) -> str:
    """'Extracting differences 2/5 (computed) · detail'"""
    name = STEP_NAMES.get(event.step, event.step)
    where = "cached" if event.cached else "computed"
    text = f"{name} {event.i}/{event.n} ({where})" if event.n else f"{name} ({where})"
    if event.detail:
        text += f" · {event.detail}"
    return text


class StepProgress(Horizontal):
    """A label and a bar; hidden while idle."""

    DEFAULT_CSS = """
    StepProgress {
        height: 1;
        padding: 0 1;
    }
    StepProgress > Label {
        width: 1fr;
    }
    StepProgress > ProgressBar {
        width: 40;
    }
    StepProgress.-idle > ProgressBar {
        display: none;
    }
    """

    def compose(self) -> ComposeResult:
        yield Label("", markup=False)
        yield ProgressBar(total=None, show_eta=False)

    def on_mount(self) -> None:
        self.add_class("-idle")

    def show(self, event: ProgressEvent) -> None:
        self.remove_class("-idle")
        self.query_one(Label).update(Text(describe(event)))
        bar = self.query_one(ProgressBar)
        if event.n:
            bar.update(total=event.n, progress=event.i)
        else:
            bar.update(total=None)

    def message(self, text: str) -> None:
        """Show a line of text and hide the bar (done, cancelled, failed)."""
        self.add_class("-idle")
        self.query_one(Label).update(Text(text))

    @property
    def label_text(self) -> str:
        return str(self.query_one(Label).content)
