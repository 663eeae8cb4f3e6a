"""How the user differs: first the measured differences in words (counted from the texts,
no model), then the model's differences per comparison item, one column per dimension,
with the entries that only echo the prompt dimmed and their reason given, and last the
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

from ..messages import StepProgressed, WorkCancelled
from ..widgets.status import StatusBar
from ..widgets.step_progress import StepProgress
from ..widgets.text_view import TextView
from .base import EngineScreen

if TYPE_CHECKING:
    from dpl_engine import ComparisonSet, Differences, MeasuredDifferences, Profile
    from dpl_engine.describe import MeasuredAccount
    from dpl_engine.informative import Verdict

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


BETTER_MODEL = (
    "Dimmed entries only echo the prompt or compare nothing: the model is too small for this "
    "step. For differences you can trust, add a larger instruction-tuned GGUF "
    "(`dpl models add PATH`) and pick it with Ctrl+P → Model."
)


@dataclass(frozen=True)
class DifferencesView:
    comparisons: list[ComparisonSet]
    differences: list[Differences]
    profile: Profile
    measured: list[MeasuredDifferences]
    overall: MeasuredAccount | None
    """The measured account over all comparison items (None without any)."""
    accounts: list[MeasuredAccount]
    """One measured account per comparison item, in order."""
    verdicts: dict[str, list[Verdict]]
    """Per item id, whether each of the model's entries says anything."""
    model_id: str = ""


def compute_differences(
    app: Any, target: Any, progress: Any, token: Any, refresh: bool
) -> DifferencesView:
    from dpl_engine import describe, informative

    engine = app.engine()
    # The profile depends on the differences, which depend on the comparisons: refreshing it
    # recomputes each step once, and the two reads after it come from the cache.
    profile = engine.profile(target, "dpl", progress=progress, cancel=token, refresh=refresh)
    comparisons = engine.comparisons(target, progress=progress, cancel=token)
    differences = engine.differences(target, progress=progress, cancel=token)
    measured = engine.measured(comparisons)
    overall, accounts = describe.accounts(measured)
    return DifferencesView(
        comparisons=list(comparisons),
        differences=list(differences),
        profile=profile,
        measured=list(measured),
        overall=overall,
        accounts=accounts,
        verdicts=informative.check_all(differences, comparisons),
        model_id=engine.generator.model_id,
    )


def measured_text(value: DifferencesView, titles: dict[str, str]) -> Text:
    """The measured accounts: over all items first, then one line per item."""
    if value.overall is None:
        return Text("No comparison items, so nothing to measure.")
    out = Text()
    if len(value.accounts) > 1:
        out.append(value.overall.text + "\n")
    for a in value.accounts:
        out.append("\n" if len(value.accounts) > 1 else "")
        out.append(titles.get(a.item_id, a.item_id), style="bold")
        out.append(": " + a.text)
    return out


def _cell(text: str, verdict: Verdict | None, extra: str = "") -> Static:
    """One of the model's entries; an uninformative one is dimmed and says why."""
    if verdict is None or verdict.informative:
        return Static(Text(text), classes=f"diff-cell {extra}".strip(), markup=False)
    shown = Text(text)
    shown.append(f"\n⚠ uninformative: {verdict.reason}", style="italic")
    return Static(shown, classes=f"diff-cell diff-flagged {extra}".strip(), markup=False)


def _head_cells() -> list[Static | Label]:
    cells: list[Static | Label] = [Label("Item", classes="diff-head")]
    cells += [
        Label(Text.assemble((label, "bold"), f"\n{ASPECTS[key]}"), classes="diff-head")
        for key, label in DIMENSIONS
    ]
    return cells


def _item_cells(
    d: Differences, title: str, verdicts: dict[str, Verdict] | None = None
) -> list[Static | Label]:
    """One item's row; ``verdicts`` (by dimension) dim the entries found uninformative."""
    verdicts = verdicts or {}
    name = Text(title, style="bold")
    if not d.structured:
        name.append("\n(free text: the model gave no valid JSON)", style="italic")
    cells: list[Static | Label] = [Static(name, classes="diff-item", markup=False)]
    if d.structured:
        cells += [_cell(getattr(d, key), verdicts.get(key)) for key, _ in DIMENSIONS]
    else:
        raw = d.raw or "\n".join(filter(None, (d.writing, d.emotional, d.semantic)))
        cells.append(_cell(raw, verdicts.get("raw"), "diff-raw"))
        cells += [Static(Text("—"), classes="diff-cell", markup=False) for _ in range(2)]
    return cells


def _pending_cells(title: str) -> list[Static | Label]:
    """The row of an item whose differences are still being extracted."""
    cells: list[Static | Label] = [Static(Text(title, style="bold"), classes="diff-item")]
    cells.append(Static(Text("pending…", style="italic"), classes="diff-pending", markup=False))
    cells += [Static(Text(""), classes="diff-pending", markup=False) for _ in range(2)]
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
        self._rows: dict[str, list[Static | Label]] = {}
        """Per comparison item, the widgets of its row (pending, or its differences)."""
        self._finished: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepProgress()
        with VerticalScroll(id="diff-scroll"):
            yield TextView(
                "Measured differences (counted from the texts, no model)", id="measured-account"
            )
            yield Label("The model's differences", id="diff-model-title", classes="pane-title")
            yield Grid(id="diff-grid")
            yield Static("", id="diff-hint", markup=False)
            yield TextView("Difference-aware profile", id="profile")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Differences · {self.target.user_id} · {self.target.item.title}"
        self.query_one("#profile", TextView).set_text("Computing…")
        self.query_one("#measured-account", TextView).set_text("Computing…")
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
        self.query_one("#measured-account", TextView).set_text(measured_text(value, titles))
        model = f" ({value.model_id})" if value.model_id else ""
        self.query_one("#diff-model-title", Label).update(
            Text(f"The model's differences{model}: generated, not checked against the texts")
        )
        grid = self.query_one("#diff-grid", Grid)
        grid.remove_children()
        cells = _head_cells()
        flagged = 0
        for d in value.differences:
            verdicts = {v.dimension: v for v in value.verdicts.get(d.item_id, [])}
            flagged += sum(not v.informative for v in verdicts.values())
            cells += _item_cells(d, titles.get(d.item_id, d.item_id), verdicts)
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
        self.query_one("#diff-hint", Static).update(Text(BETTER_MODEL if flagged else ""))
        self.query_one("#profile", TextView).set_text(value.profile.text or "(empty profile)")
        total = sum(len(v) for v in value.verdicts.values())
        note = f" {flagged} of {total} model entries uninformative;" if flagged else ""
        self.query_one(StepProgress).message(
            f"{len(value.differences)} item{'' if len(value.differences) == 1 else 's'} compared;"
            f"{note} profile ready."
        )

    # -- items as they arrive ----------------------------------------------------------
    def _rows_for(self, run_id: int) -> Grid:
        """The grid, cleared for ``run_id`` when it still shows an earlier run's rows."""
        grid = self.query_one("#diff-grid", Grid)
        if self._rows_of != run_id:
            grid.remove_children()
            grid.mount_all(_head_cells())
            self._rows_of, self._rows, self._finished = run_id, {}, set()
        return grid

    @on(StepProgressed)
    def _arrived(self, message: StepProgressed) -> None:
        """Each comparison item gets a pending row as soon as its comparison users are
        chosen, filled in the moment its differences arrive; ``show`` redraws at the end."""
        event = message.event
        if event.value is None or not self._current(message.run_id):
            return
        if event.step == "compare":
            item = event.value.item
            if item.id not in self._rows or self._rows_of != message.run_id:
                grid = self._rows_for(message.run_id)
                self._rows[item.id] = _pending_cells(item.title or item.id)
                grid.mount_all(self._rows[item.id])
        elif event.step == "differences":
            grid = self._rows_for(message.run_id)
            item_id = event.value.item_id
            if item_id in self._finished:
                return  # the same run reads an item again from the cache
            self._finished.add(item_id)
            title = event.detail.removesuffix(" (free text)") or item_id
            cells = _item_cells(event.value, title)
            pending = self._rows.get(item_id)
            if pending:
                grid.mount_all(cells, before=pending[0])
                for widget in pending:
                    widget.remove()
            else:
                grid.mount_all(cells)
            self._rows[item_id] = cells

    @on(WorkCancelled)
    def _stopped(self, message: WorkCancelled) -> None:
        """Rows still pending say they were not computed; the finished ones stay (cached)."""
        if not self._current(message.run_id) or self._rows_of != message.run_id:
            return
        for item_id, cells in self._rows.items():
            if item_id not in self._finished and len(cells) > 1:
                cells[1].update(Text("not computed: cancelled (r runs it again)", style="italic"))

    def action_comparisons(self) -> None:
        from .comparison import ComparisonScreen

        self.app.push_screen(ComparisonScreen(self.target))

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self.app.push_screen(GenerateScreen(self.target))
