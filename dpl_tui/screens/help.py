"""Every key binding, by screen (``?`` or F1)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from .base import EngineScreen


def _bindings(owner: type) -> list[Binding]:
    seen: dict[str, Binding] = {}
    for cls in reversed(owner.__mro__):
        if not cls.__module__.startswith("dpl_tui"):
            continue  # Textual's own focus and copy keys are not listed
        for b in cls.__dict__.get("BINDINGS", []):
            binding = _as_binding(b)
            if binding is not None and binding.description:
                seen[binding.key] = binding
    return list(seen.values())


def _as_binding(b: BindingType) -> Binding | None:
    if isinstance(b, Binding):
        return b
    if isinstance(b, tuple) and len(b) >= 2:
        return Binding(*b)
    return None


def _keys(binding: Binding) -> str:
    keys = binding.key_display or binding.key
    return {"question_mark": "?", "slash": "/", "escape": "Esc", "enter": "Enter"}.get(keys, keys)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("f1", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label("Keys", classes="pane-title")
            yield DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)
            yield Label(
                "Esc closes · Ctrl+P opens the command palette · the mouse works too",
                id="help-hint",
            )

    def on_mount(self) -> None:
        from ..app import DplApp
        from .comparison import ComparisonScreen
        from .differences import DifferencesScreen
        from .generate import GenerateScreen
        from .user import UserScreen
        from .users import UsersScreen
        from .welcome import WelcomeScreen

        table = self.query_one("#help-keys", DataTable)
        table.add_columns("Where", "Key", "Action")
        sections: list[tuple[str, list[Binding]]] = [
            ("Everywhere", _bindings(DplApp) + [Binding("ctrl+p", "", "Command palette")]),
            ("Users", _bindings(UsersScreen)),
            ("User", _bindings(UserScreen)),
            ("Comparisons", _bindings(ComparisonScreen) or _bindings(EngineScreen)),
            ("Differences", _bindings(DifferencesScreen)),
            ("Generate", _bindings(GenerateScreen)),
            ("Welcome", _bindings(WelcomeScreen)),
        ]
        for where, bindings in sections:
            for i, binding in enumerate(bindings):
                table.add_row(
                    Text(where if i == 0 else "", style="bold"),
                    Text(_keys(binding)),
                    Text(binding.description),
                )
        table.focus()
