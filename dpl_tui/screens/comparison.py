"""Who the user is compared with: the comparison items (the BM25 top k among the user's
past items with at least m other reviewers, marked where they are also retrieved reviews),
and for each the representative users (cluster, distance, similarity, rating), their
reviews beside the user's own, and the measured differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Label, OptionList
from textual.widgets.option_list import Option

from user_store.text import readable

from ..widgets.status import StatusBar
from ..widgets.step_progress import StepProgress
from ..widgets.text_view import TextView
from .base import EngineScreen
from .user import stars

if TYPE_CHECKING:
    from dpl_engine import ComparisonSet, MeasuredDifferences, Retrieved

MEASURES = [
    ("rating", "Rating", "{:.2f}"),
    ("words", "Words", "{:.0f}"),
    ("sentence_words", "Words per sentence", "{:.1f}"),
    ("lexical_diversity", "Lexical diversity", "{:.2f}"),
    ("exclamations_per_100_words", "Exclamations /100 words", "{:.2f}"),
    ("first_person_per_100_words", "First person /100 words", "{:.2f}"),
    ("sentiment", "Sentiment (-1..1)", "{:+.2f}"),
]


@dataclass(frozen=True)
class ComparisonView:
    retrieved: list[Retrieved]
    comparisons: list[ComparisonSet]
    measured: list[MeasuredDifferences]
    eligible: int = 0
    """How many of the user's past items had enough other reviewers to be compared on."""

    @property
    def also_retrieved(self) -> set[str]:
        """Comparison items that are also among the retrieved past reviews."""
        return {r.entry.item.id for r in self.retrieved} & {c.item.id for c in self.comparisons}


def compute_comparisons(
    app: Any, target: Any, progress: Any, token: Any, refresh: bool
) -> ComparisonView:
    engine = app.engine()
    retrieved = engine.retrieve(target)
    _, eligible = engine.comparison_items(target)
    comparisons = engine.comparisons(target, progress=progress, cancel=token, refresh=refresh)
    measured = engine.measured(comparisons)
    return ComparisonView(list(retrieved), list(comparisons), list(measured), eligible)


def measure_rows(m: MeasuredDifferences) -> list[tuple[str, str, str, str]]:
    rows = []
    for attr, label, fmt in MEASURES:
        mine: float = getattr(m.user, attr)
        theirs: float = getattr(m.others, attr)
        rows.append((label, fmt.format(mine), fmt.format(theirs), f"{mine - theirs:+.2f}"))
    return rows


class ComparisonScreen(EngineScreen):
    DOING = "choosing comparison users"
    BINDINGS = [
        Binding("d", "differences", "Differences"),
        Binding("g", "generate", "Generate"),
    ]

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.view: ComparisonView | None = None
        self.current: ComparisonSet | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepProgress()
        with Horizontal(id="cmp-body"):
            with Vertical(id="cmp-items-pane"):
                yield Label("Comparison items", classes="pane-title")
                yield OptionList(id="cmp-items")
            with Vertical(id="cmp-detail"):
                yield Label("", id="cmp-item-title", classes="pane-title", markup=False)
                yield DataTable(id="cmp-users", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="cmp-reviews"):
                    yield TextView("The user's review", id="own-review")
                    yield TextView("Comparison user's review", id="other-review")
                yield DataTable(id="measured", cursor_type="none", zebra_stripes=True)
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Comparisons · {self.target.user_id} · {self.target.item.title}"
        users = self.query_one("#cmp-users", DataTable)
        for key, label in [
            ("user", "User"),
            ("cluster", "Cluster"),
            ("distance", "Distance"),
            ("similarity", "Similarity"),
            ("rating", "Rating"),
        ]:
            users.add_column(label, key=key)
        measured = self.query_one("#measured", DataTable)
        for key, label in [
            ("measure", "Measured"),
            ("user", "User"),
            ("others", "Others (mean)"),
            ("delta", "Δ"),
        ]:
            measured.add_column(label, key=key)
        self.refresh_work()

    def refresh_work(self, refresh: bool = False) -> None:
        app = self.dpl
        self.start(
            lambda progress, token, _run: compute_comparisons(
                app, self.target, progress, token, refresh
            )
        )

    def show(self, value: ComparisonView) -> None:
        self.view = value
        session = self.dpl.session
        if session is not None and session.target == self.target:
            session.retrieved, session.comparisons = value.retrieved, value.comparisons
            session.measured = value.measured
        options = self.query_one("#cmp-items", OptionList)
        options.clear_options()
        also = value.also_retrieved
        for rank, c in enumerate(value.comparisons, start=1):
            note = f" · {len(c.users)} users" + (" · also retrieved" if c.item.id in also else "")
            prompt = Text.assemble(f"{rank}. ", c.item.title, (note, "dim"))
            options.add_option(Option(prompt, id=c.item.id))
        settings = self.dpl.settings
        self.query_one(StepProgress).message(
            f"{len(value.comparisons)} comparison items: the BM25 top {settings.k} of "
            f"{value.eligible} past items with >= {settings.m} other reviewers; "
            f"{len(also)} of them also among the {len(value.retrieved)} retrieved reviews."
        )
        if value.comparisons:
            options.highlighted = 0
            self.show_item(value.comparisons[0].item.id)
        else:
            self.query_one("#cmp-item-title", Label).update(
                Text(
                    f"None of the user's past items has >= {settings.m} other reviewers: "
                    "nothing to compare with."
                )
            )
        options.focus()

    @on(OptionList.OptionHighlighted, "#cmp-items")
    def _item(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.show_item(event.option.id)

    def show_item(self, item_id: str) -> None:
        if self.view is None:
            return
        current = next((c for c in self.view.comparisons if c.item.id == item_id), None)
        self.current = current
        title = self.query_one("#cmp-item-title", Label)
        users = self.query_one("#cmp-users", DataTable)
        measured = self.query_one("#measured", DataTable)
        users.clear()
        measured.clear()
        if current is None:
            return
        retrieved = " (also a retrieved review)" if item_id in self.view.also_retrieved else ""
        title.update(
            Text(
                f"{current.item.title}: {len(current.users)} of {current.reviewers} other "
                f"reviewers{retrieved}"
            )
        )
        for u in current.users:
            users.add_row(
                Text(u.user_id),
                Text(str(u.cluster)),
                Text(f"{u.distance:.3f}"),
                Text(f"{u.similarity:.3f}"),
                Text(stars(u.rating)),
                key=u.user_id,
            )
        own = current.user_review
        self.query_one("#own-review", TextView).set_text(
            Text.assemble(
                (readable(own.title), "bold"), "  ", stars(own.rating), "\n\n", readable(own.text)
            ),
            title=f"{own.user_id} (this user)",
        )
        if current.users:
            self._show_other(current.users[0].user_id)
        for m in self.view.measured:
            if m.item_id == item_id:
                for row in measure_rows(m):
                    measured.add_row(*(Text(cell) for cell in row))

    @on(DataTable.RowHighlighted, "#cmp-users")
    def _user(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._show_other(str(event.row_key.value))

    def _show_other(self, user_id: str) -> None:
        if self.current is None:
            return
        for u in self.current.users:
            if u.user_id == user_id:
                r = u.review
                self.query_one("#other-review", TextView).set_text(
                    Text.assemble(
                        (readable(r.title), "bold"),
                        "  ",
                        stars(r.rating),
                        "\n\n",
                        readable(r.text),
                    ),
                    title=f"{u.user_id} (cluster {u.cluster}, similarity {u.similarity:.2f})",
                )

    def action_differences(self) -> None:
        from .differences import DifferencesScreen

        self.app.push_screen(DifferencesScreen(self.target))

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self.app.push_screen(GenerateScreen(self.target))
