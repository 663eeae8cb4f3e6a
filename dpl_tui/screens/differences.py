"""The structured differences per comparison item, one column per dimension, and the
difference-aware profile summarized from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.widgets import Footer, Header, Label, Static

from ..messages import StepProgressed
from ..widgets.status import StatusBar
from ..widgets.step_progress import StepProgress
from ..widgets.text_view import TextView
from .base import EngineScreen

if TYPE_CHECKING:
    from dpl_engine import ComparisonSet, Differences, Profile

DIMENSIONS = [
    ("writing", "Writing style"),
    ("emotional", "Emotional style"),
    ("semantic", "Semantic style"),
]
ASPECTS = {
    "writing": "word choice, sentence structure",
    "emotional": "sentiment, tone",
    "semantic": "information density, coherence",
}


@dataclass(frozen=True)
class DifferencesView:
    comparisons: list[ComparisonSet]
    differences: list[Differences]
    profile: Profile


def compute_differences(
    app: Any, target: Any, progress: Any, token: Any, refresh: bool
) -> DifferencesView:
    engine = app.engine()
    # The profile depends on the differences, which depend on the comparisons: refreshing it
    # recomputes each step once, and the two reads after it come from the cache.
    profile = engine.profile(target, "dpl", progress=progress, cancel=token, refresh=refresh)
    comparisons = engine.comparisons(target, progress=progress, cancel=token)
    differences = engine.differences(target, progress=progress, cancel=token)
    return DifferencesView(list(comparisons), list(differences), profile)


def _head_cells() -> list[Static | Label]:
    cells: list[Static | Label] = [Label("Item", classes="diff-head")]
    cells += [
        Label(Text.assemble((label, "bold"), f"\n{ASPECTS[key]}"), classes="diff-head")
        for key, label in DIMENSIONS
    ]
    return cells


def _item_cells(d: Differences, title: str) -> list[Static | Label]:
    name = Text(title, style="bold")
    if not d.structured:
        name.append("\n(free text: the model gave no valid JSON)", style="italic")
    cells: list[Static | Label] = [Static(name, classes="diff-item", markup=False)]
    if d.structured:
        cells += [
            Static(Text(getattr(d, key)), classes="diff-cell", markup=False)
            for key, _ in DIMENSIONS
        ]
    else:
        raw = d.raw or "\n".join(filter(None, (d.writing, d.emotional, d.semantic)))
        cells.append(Static(Text(raw), classes="diff-cell diff-raw", markup=False))
        cells += [Static(Text("—"), classes="diff-cell", markup=False) for _ in range(2)]
    return cells


class DifferencesScreen(EngineScreen):
    DOING = "extracting differences"
    BINDINGS = [
        Binding("c", "comparisons", "Comparisons"),
        Binding("g", "generate", "Generate"),
    ]

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.view: DifferencesView | None = None
        self._rows_of: int | None = None
        """The run whose items the grid shows while they arrive; None once ``show`` drew it."""
        self._row_items: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepProgress()
        with VerticalScroll(id="diff-scroll"):
            yield Grid(id="diff-grid")
            yield TextView("Difference-aware profile", id="profile")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Differences · {self.target.user_id} · {self.target.item.title}"
        self.query_one("#profile", TextView).set_text("Computing…")
        self.refresh_work()

    def refresh_work(self, refresh: bool = False) -> None:
        app = self.dpl
        self.start(
            lambda progress, token, _run: compute_differences(
                app, self.target, progress, token, refresh
            )
        )

    def show(self, value: DifferencesView) -> None:
        self.view = value
        session = self.dpl.session
        if session is not None and session.target == self.target:
            session.comparisons, session.differences = value.comparisons, value.differences
            session.profile = value.profile
        titles = {c.item.id: c.item.title for c in value.comparisons}
        grid = self.query_one("#diff-grid", Grid)
        grid.remove_children()
        cells = _head_cells()
        for d in value.differences:
            cells += _item_cells(d, titles.get(d.item_id, d.item_id))
        self._rows_of = None
        if not value.differences:
            cells.append(
                Static(
                    Text(
                        "No comparison items: the user's retrieved items have too few "
                        "other reviewers (lower m with Ctrl+P → Parameters)."
                    ),
                    classes="diff-item",
                    markup=False,
                )
            )
        grid.mount_all(cells)
        self.query_one("#profile", TextView).set_text(value.profile.text or "(empty profile)")
        self.query_one(StepProgress).message(
            f"{len(value.differences)} item{'' if len(value.differences) == 1 else 's'} compared; "
            "profile ready."
        )

    @on(StepProgressed)
    def _arrived(self, message: StepProgressed) -> None:
        """Each item's differences appear as soon as they arrive; ``show`` redraws at the end."""
        event = message.event
        if event.step != "differences" or event.value is None or not self._current(message.run_id):
            return
        grid = self.query_one("#diff-grid", Grid)
        cells: list[Static | Label] = []
        if self._rows_of != message.run_id:
            grid.remove_children()
            cells = _head_cells()
            self._rows_of, self._row_items = message.run_id, set()
        if event.value.item_id in self._row_items:
            return  # the same run reads an item again from the cache
        self._row_items.add(event.value.item_id)
        title = event.detail.removesuffix(" (free text)") or event.value.item_id
        grid.mount_all(cells + _item_cells(event.value, title))

    def action_comparisons(self) -> None:
        from .comparison import ComparisonScreen

        self.app.push_screen(ComparisonScreen(self.target))

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self.app.push_screen(GenerateScreen(self.target))
