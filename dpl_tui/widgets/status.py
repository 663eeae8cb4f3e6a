"""The status line at the bottom of every screen: model, GPU offload, and what is running."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    """Mirrors the app's ``model_status``, ``gpu_status``, ``activity`` and ``preparing``."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def on_mount(self) -> None:
        for name in ("model_status", "gpu_status", "activity", "preparing"):
            self.watch(self.app, name, self._changed, init=False)
        self._changed()

    def _changed(self, _value: object = None) -> None:
        app = self.app
        line = Text()
        line.append("Model: ", style="bold")
        line.append(str(getattr(app, "model_status", "")))
        line.append("  │  ")
        line.append("GPU offload: ", style="bold")
        line.append(str(getattr(app, "gpu_status", "")))
        line.append("  │  ")
        line.append("Running: ", style="bold")
        line.append(str(getattr(app, "activity", "")) or "nothing")
        preparing = str(getattr(app, "preparing", ""))
        if preparing:
            line.append("  │  ")
            line.append("Preparing: ", style="bold")
            line.append(preparing)
        self.update(line)
