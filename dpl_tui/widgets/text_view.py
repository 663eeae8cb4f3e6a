"""A titled, scrolling panel for review text and other user data.

Review text is user data, so it is always shown as a plain ``rich.text.Text``:
markup such as ``[bold red]`` in a review appears exactly as typed.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


def plain(value: object) -> Text:
    """User data as literal text (never parsed as markup)."""
    return Text("" if value is None else str(value))


class TextView(VerticalScroll):
    """A bordered, scrollable block of literal text that wraps long lines."""

    DEFAULT_CSS = """
    TextView {
        border: round $primary 40%;
        padding: 0 1;
        height: 1fr;
    }
    TextView:focus-within, TextView:focus {
        border: round $accent;
    }
    TextView > .text-body {
        width: 1fr;
        height: auto;
    }
    """

    def __init__(
        self, title: str = "", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self._text = Text()
        self.can_focus = True

    def compose(self) -> ComposeResult:
        yield Static(self._text, classes="text-body", markup=False)

    @property
    def body(self) -> Static:
        return self.query_one(".text-body", Static)

    @property
    def text(self) -> str:
        return self._text.plain

    def set_text(self, value: str | Text, *, title: str | None = None) -> None:
        """Replace the content; a ``str`` is taken literally."""
        self._text = value.copy() if isinstance(value, Text) else plain(value)
        if title is not None:
            self.border_title = title
        if self.is_mounted:
            self.body.update(self._text)
            self.scroll_home(animate=False)

    def append(self, value: str) -> None:
        """Add literal text at the end and keep the end in view."""
        self._text.append(value)
        if self.is_mounted:
            self.body.update(self._text)
            self.scroll_end(animate=False)
