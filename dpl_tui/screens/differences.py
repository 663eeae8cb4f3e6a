"""The structured differences per comparison item, one column per dimension, and the
difference-aware profile summarized from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.widgets import Footer, Header, Label, Static

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


class DifferencesScreen(EngineScreen):
    DOING = "extracting differences"
    BINDINGS = [
        Binding("c", "comparisons", "Comparisons"),
        Binding("g", "generate", "Generate"),
    ]

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.view: DifferencesView | None = None

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
        cells: list[Static | Label] = [Label("Item", classes="diff-head")]
        cells += [
            Label(Text.assemble((label, "bold"), f"\n{ASPECTS[key]}"), classes="diff-head")
            for key, label in DIMENSIONS
        ]
        for d in value.differences:
            name = Text(titles.get(d.item_id, d.item_id), style="bold")
            if not d.structured:
                name.append("\n(free text: the model gave no valid JSON)", style="italic")
            cells.append(Static(name, classes="diff-item", markup=False))
            if d.structured:
                cells += [
                    Static(Text(getattr(d, key)), classes="diff-cell", markup=False)
                    for key, _ in DIMENSIONS
                ]
            else:
                raw = d.raw or "\n".join(filter(None, (d.writing, d.emotional, d.semantic)))
                cells.append(Static(Text(raw), classes="diff-cell diff-raw", markup=False))
                cells += [Static(Text("—"), classes="diff-cell", markup=False) for _ in range(2)]
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

    def action_comparisons(self) -> None:
        from .comparison import ComparisonScreen

        self.app.push_screen(ComparisonScreen(self.target))

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self.app.push_screen(GenerateScreen(self.target))
