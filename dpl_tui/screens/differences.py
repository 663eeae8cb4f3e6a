"""How the user differs: first the measured differences in words (counted from the texts,
no model), then the model's differences per comparison item, one column per dimension,
with the entries that only echo the prompt dimmed and their reason given, and last the
difference-aware profile summarized from them.

Each part shows the moment it is known: the measured account as soon as the comparison
sets exist (before any model call), each item's differences judged as they arrive, and
the profile as it is written. A cancel keeps what was shown; a profile cut short stays
marked as partial (the engine never stores it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.widgets import Footer, Header, Label, Static

from ..messages import StepProgressed, WorkCancelled, WorkFailed
from ..widgets.status import StatusBar
from ..widgets.step_progress import StepProgress
from ..widgets.step_times import StepTimes
from ..widgets.text_view import TextView
from .base import EngineScreen

if TYPE_CHECKING:
    from dpl_engine import ComparisonSet, Differences, MeasuredDifferences, Profile
    from dpl_engine.method.describe import MeasuredAccount
    from dpl_engine.method.informative import Verdict

PROFILE_TITLE = "Difference-aware profile"
FLUSH_EVERY_S = 1 / 20
"""How often the profile being written is redrawn (its deltas are batched)."""

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
    from dpl_engine.method import describe, informative

    engine = app.engine()
    # The profile depends on the differences, which depend on the comparisons: refreshing it
    # recomputes each step once, and the two reads after it come from the cache (their
    # progress is not shown: the screen saw each item arrive already).
    profile = engine.profile(target, "dpl", progress=progress, cancel=token, refresh=refresh)
    comparisons = engine.comparisons(target, cancel=token)
    differences = engine.differences(target, cancel=token)
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


def measured_text(
    overall: MeasuredAccount | None, accounts: list[MeasuredAccount], titles: dict[str, str]
) -> Text:
    """The measured accounts: over all items first, then one line per item."""
    if overall is None:
        return Text("No comparison items, so nothing to measure.")
    out = Text()
    if len(accounts) > 1:
        out.append(overall.text + "\n")
    for a in accounts:
        out.append("\n" if len(accounts) > 1 else "")
        out.append(titles.get(a.item_id, a.item_id), style="bold")
        out.append(": " + a.text)
    return out


def count_text(flagged: int, total: int, *, so_far: bool) -> Text:
    """'3 of 9 entries so far uninformative' (empty before the first entry)."""
    if not total:
        return Text("")
    when = " so far" if so_far else ""
    return Text(f"{flagged} of {total} entries{when} uninformative", style="italic")


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
        self._sets: dict[str, ComparisonSet] = {}
        """The run's comparison sets by item id, as they arrive (the verdicts need them)."""
        self.verdicts: dict[str, list[Verdict]] = {}
        """The run's verdicts by item id, each made the moment the item's differences came."""
        self.measured_shown = False
        """Whether the run's measured account is on screen (it comes before any model call)."""
        self.profile_state = "waiting"
        """'waiting', 'writing' (deltas arriving), 'done', or 'partial' (cut short)."""
        self._profile_parts: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepProgress()
        yield StepTimes(id="diff-times")
        with VerticalScroll(id="diff-scroll"):
            yield TextView(
                "Measured differences (counted from the texts, no model)", id="measured-account"
            )
            yield Label("The model's differences", id="diff-model-title", classes="pane-title")
            yield Static("", id="diff-count", markup=False)
            yield Grid(id="diff-grid")
            yield Static("", id="diff-hint", markup=False)
            yield TextView(PROFILE_TITLE, id="profile")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Differences · {self.target.user_id} · {self.target.item.title}"
        self.set_interval(FLUSH_EVERY_S, self._flush_profile)
        self.refresh_work()

    def refresh_work(self, refresh: bool = False) -> None:
        app = self.dpl
        self._sets, self.verdicts = {}, {}
        self.measured_shown, self.profile_state, self._profile_parts = False, "waiting", []
        self.query_one("#profile", TextView).set_text("Computing…", title=PROFILE_TITLE)
        self.query_one("#measured-account", TextView).set_text("Computing…")
        self.query_one("#diff-count", Static).update("")
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
        account = measured_text(value.overall, value.accounts, titles)
        measured = self.query_one("#measured-account", TextView)
        if measured.text != account.plain:  # shown since the comparison sets came: stays put
            measured.set_text(account)
        self.measured_shown = True
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
        total = sum(len(v) for v in value.verdicts.values())
        self.query_one("#diff-count", Static).update(count_text(flagged, total, so_far=False))
        self.query_one("#diff-hint", Static).update(Text(BETTER_MODEL if flagged else ""))
        self._profile_parts.clear()
        self.profile_state = "done"
        self.query_one("#profile", TextView).set_text(
            value.profile.text or "(empty profile)", title=PROFILE_TITLE
        )
        note = f" {flagged} of {total} model entries uninformative;" if flagged else ""
        self.query_one(StepProgress).message(
            f"{len(value.differences)} item{'' if len(value.differences) == 1 else 's'} compared;"
            f"{note} profile ready."
        )

    # -- what arrives while the run goes on -------------------------------------------
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
        chosen; the measured account follows the comparison sets at once; each item's row
        is filled in, its entries judged, the moment its differences arrive; the profile
        grows as it is written. ``show`` redraws at the end."""
        event = message.event
        if not self._current(message.run_id):
            return
        if event.step == "profile":
            self._profile_progressed(event)
        elif event.value is None:
            return
        elif event.step == "compare":
            item = event.value.item
            self._sets[item.id] = event.value
            if item.id not in self._rows or self._rows_of != message.run_id:
                grid = self._rows_for(message.run_id)
                self._rows[item.id] = _pending_cells(item.title or item.id)
                grid.mount_all(self._rows[item.id])
        elif event.step == "measure":
            self._measured(event.value)
        elif event.step == "differences":
            self._differences_arrived(message.run_id, event)

    def _measured(self, measured: list[MeasuredDifferences]) -> None:
        from dpl_engine.method import describe

        overall, accounts = describe.accounts(measured)
        titles = {item_id: c.item.title for item_id, c in self._sets.items()}
        self.query_one("#measured-account", TextView).set_text(
            measured_text(overall, accounts, titles)
        )
        self.measured_shown = True

    def _differences_arrived(self, run_id: int, event: Any) -> None:
        from dpl_engine.method import informative

        grid = self._rows_for(run_id)
        found: Differences = event.value
        item_id = found.item_id
        if item_id in self._finished:
            return  # the same run reads an item again from the cache
        self._finished.add(item_id)
        verdicts = informative.check(found, self._sets.get(item_id))
        self.verdicts[item_id] = verdicts
        title = event.detail.removesuffix(" (free text)") or item_id
        cells = _item_cells(found, title, {v.dimension: v for v in verdicts})
        pending = self._rows.get(item_id)
        if pending:
            grid.mount_all(cells, before=pending[0])
            for widget in pending:
                widget.remove()
        else:
            grid.mount_all(cells)
        self._rows[item_id] = cells
        every = [v for vs in self.verdicts.values() for v in vs]
        flagged = sum(not v.informative for v in every)
        self.query_one("#diff-count", Static).update(count_text(flagged, len(every), so_far=True))
        self.query_one("#diff-hint", Static).update(Text(BETTER_MODEL if flagged else ""))

    def _profile_progressed(self, event: Any) -> None:
        from dpl_engine import TokenEvent

        if isinstance(event.value, TokenEvent):
            if self.profile_state != "writing":  # the first delta of the profile
                self.profile_state = "writing"
                self.query_one("#profile", TextView).set_text(
                    "", title=f"{PROFILE_TITLE}: being written…"
                )
            self._profile_parts.append(event.value.text)
        elif event.i == 0 and self.profile_state == "waiting":
            self.query_one("#profile", TextView).set_text("Waiting for the model's first words…")

    def _flush_profile(self) -> None:
        if self._profile_parts and self.profile_state == "writing":
            text = "".join(self._profile_parts)
            self._profile_parts.clear()
            self.query_one("#profile", TextView).append(text)

    def _cut_short(self, run_id: int, why: str) -> None:
        """After a cancel or a failure: what was shown stays, and says what it is."""
        if not self.measured_shown:
            self.query_one("#measured-account", TextView).set_text(
                f"Not measured: {why} before the comparison users were chosen (r runs it again)."
            )
        profile = self.query_one("#profile", TextView)
        if self.profile_state == "writing":
            self._flush_profile()
            self.profile_state = "partial"
            partial = Text(profile.text.rstrip())
            partial.append(
                f"\n\n(partial: the profile stopped here, {why}; it is not saved, "
                "r writes it again)",
                style="italic",
            )
            profile.set_text(partial, title=f"{PROFILE_TITLE}: partial, {why}, not saved")
            profile.scroll_end(animate=False)
        elif self.profile_state == "waiting":
            profile.set_text(f"Not written: {why} before the profile (r runs it again).")
        if self._rows_of != run_id:
            return  # the grid shows no row of this run
        for item_id, cells in self._rows.items():
            if item_id not in self._finished and len(cells) > 1:
                cells[1].update(Text(f"not computed: {why} (r runs it again)", style="italic"))

    @on(WorkCancelled)
    def _stopped(self, message: WorkCancelled) -> None:
        """Rows still pending say they were not computed; the finished ones stay (cached)."""
        if self._current(message.run_id):
            self._cut_short(message.run_id, "cancelled")

    @on(WorkFailed)
    def _broke(self, message: WorkFailed) -> None:
        if self._current(message.run_id):
            self._cut_short(message.run_id, "failed")

    def action_comparisons(self) -> None:
        from .comparison import ComparisonScreen

        self.app.push_screen(ComparisonScreen(self.target))

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self.app.push_screen(GenerateScreen(self.target))
