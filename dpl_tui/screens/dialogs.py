"""Small modal dialogs: switch model, parameters (k, n, m), export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Integer
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet
from textual.widgets.option_list import Option

from ..export import ExportRequest, default_export_path

if TYPE_CHECKING:
    from user_store.config import Settings


@dataclass(frozen=True)
class Parameters:
    """The method's sizes, as the parameters dialog returns them."""

    k: int
    """Past reviews retrieved."""
    n: int
    """Comparison users per item."""
    m: int
    """Other reviewers an item needs to be a comparison item."""


@dataclass(frozen=True)
class ModelChoice:
    model: str
    """A GGUF path or a registered model or server name; '' for the bundled default."""
    adapter: str = ""
    """A registered adapter name or an adapter .gguf path; '' for none."""


class ModelDialog(ModalScreen[ModelChoice | None]):
    """Returns the chosen model and adapter, None to cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Switch model", classes="pane-title")
            yield Label("A GGUF file, or one of the registered models and servers below:")
            yield Input(
                self.settings.model or "", placeholder="/path/to/model.gguf", id="model-path"
            )
            options = [Option(Text("bundled default (SmolLM2-135M-Instruct)"), id="")]
            options += [
                Option(Text(f"{name}  {path}"), id=name)
                for name, path in sorted(self.settings.models.items())
            ]
            options += [
                Option(Text(f"{name}  {entry.get('model', '')} at {entry.get('url', '')}"), id=name)
                for name, entry in sorted(self.settings.servers.items())
            ]
            yield OptionList(*options, id="registered")
            names = ", ".join(sorted(self.settings.adapters)) or "none yet: dpl tune makes one"
            yield Label(Text(f"LoRA adapter for the reviews (blank: none; registered: {names}):"))
            yield Input(self.settings.adapter or "", placeholder="adapter name or .gguf",
                        id="adapter")
            with Horizontal(classes="buttons"):
                yield Button("Load", variant="primary", id="load")
                yield Button("Cancel", id="cancel")

    def _adapter(self) -> str | None:
        """The adapter field, or None (after saying why) when it names nothing."""
        value = self.query_one("#adapter", Input).value.strip()
        if value and value not in self.settings.adapters and not Path(value).expanduser().exists():
            self.notify(
                f"No adapter named {value!r} and no such file. Train one with dpl tune, or "
                "leave the field blank.",
                title="Adapter not found",
                severity="error",
                markup=False,
            )
            return None
        return value

    @on(OptionList.OptionSelected, "#registered")
    def _registered(self, event: OptionList.OptionSelected) -> None:
        adapter = self._adapter()
        if adapter is not None:
            self.dismiss(ModelChoice(event.option.id or "", adapter))

    @on(Input.Submitted, "#model-path")
    @on(Input.Submitted, "#adapter")
    @on(Button.Pressed, "#load")
    def _load(self) -> None:
        value = self.query_one("#model-path", Input).value.strip()
        known = value in self.settings.models or value in self.settings.servers
        if value and not known and not Path(value).expanduser().exists():
            self.notify(
                f"No file at {value!r}. Give the path of a .gguf file or a registered name.",
                title="Model not found",
                severity="error",
                markup=False,
            )
            return
        adapter = self._adapter()
        if adapter is not None:
            self.dismiss(ModelChoice(value, adapter))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ParametersDialog(ModalScreen[Parameters | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Parameters", classes="pane-title")
            for name, value, text in [
                ("k", self.settings.k, "past reviews retrieved"),
                ("n", self.settings.n, "comparison users per item"),
                ("m", self.settings.m, "other reviewers an item needs"),
            ]:
                with Horizontal(classes="field"):
                    yield Label(f"{name} ({text})", classes="field-label wide")
                    yield Input(
                        str(value),
                        id=f"param-{name}",
                        type="integer",
                        validators=[Integer(minimum=1, maximum=100)],
                    )
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def _save(self) -> None:
        values: dict[str, int] = {}
        for name in ("k", "n", "m"):
            field = self.query_one(f"#param-{name}", Input)
            result = field.validate(field.value)
            if result is not None and not result.is_valid:
                self.notify(
                    f"{name} = {field.value!r}: give a whole number from 1 to 100.",
                    title="Invalid parameter",
                    severity="error",
                    markup=False,
                )
                field.focus()
                return
            values[name] = int(field.value)
        self.dismiss(Parameters(**values))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportDialog(ModalScreen[ExportRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export", classes="pane-title")
            yield Label("Comparisons, differences, profile and generations of this user.")
            with RadioSet(id="export-format"):
                yield RadioButton("Markdown", value=True, id="fmt-markdown")
                yield RadioButton("JSON", id="fmt-json")
            yield Input(str(default_export_path(self.user_id, "markdown")), id="export-path")
            with Horizontal(classes="buttons"):
                yield Button("Export", variant="primary", id="export")
                yield Button("Cancel", id="cancel")

    def _format(self) -> str:
        return "json" if self.query_one("#fmt-json", RadioButton).value else "markdown"

    @on(RadioSet.Changed, "#export-format")
    def _format_changed(self) -> None:
        path = self.query_one("#export-path", Input)
        suffix = ".json" if self._format() == "json" else ".md"
        path.value = str(Path(path.value).with_suffix(suffix))

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export")
    def _export(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        if not value:
            self.notify("Give a file to write.", title="No export path", severity="error")
            return
        self.dismiss(ExportRequest(Path(value).expanduser(), self._format()))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
