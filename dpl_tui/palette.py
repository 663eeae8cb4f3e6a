"""Command palette (Ctrl+P) entries: switch model, method or preset, recompute, export,
import the sample, theme and parameters."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from .app import DplApp

METHOD_HELP = {
    "dpl": "differences with representative users + profile (the full method)",
    "profile": "a profile from past reviews, without differences",
    "rag": "item, rating, title and the retrieved past reviews",
    "none": "item, rating and title only",
}
PRESET_HELP = {
    "dpl": "dpl's choices: stemmed BM25, 10 KMeans restarts, JSON differences (the default)",
    "paper": "the published choices: BM25Okapi, default KMeans restarts, free-text differences",
}


class DplCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: DplApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, Callable[[], object], str]] = [
            (
                "Switch model…",
                app.action_switch_model,
                "Load another GGUF file or registered model",
            ),
        ]
        commands += [
            (f"Switch method: {name}", partial(app.set_method, name), text)
            for name, text in METHOD_HELP.items()
        ]
        commands += [
            (f"Switch preset: {name}", partial(app.set_preset, name), text)
            for name, text in PRESET_HELP.items()
        ]
        commands += [
            (
                "Refresh (recompute)",
                app.action_refresh,
                "Recompute this screen's results, ignoring the cache",
            ),
            (
                "Export…",
                app.action_export,
                "Write the user's comparisons, differences, profile and generations",
            ),
            ("Import sample", app.action_import_sample, "Import the bundled sample data set"),
            ("Theme…", app.action_change_theme, "Choose the colour theme (saved in the settings)"),
            ("Parameters (k, n, m)…", app.action_settings, "Retrieval and comparison parameters"),
        ]
        return commands

    async def discover(self) -> Hits:
        for name, callback, text in self._commands():
            yield DiscoveryHit(name, callback, help=text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=text)
