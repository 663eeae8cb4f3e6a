"""One user: the review history (full text of the selected review) and the choice of
target, either the held-out latest review or any catalogue item the user has not reviewed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.validation import Number
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
)
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from user_store.text import readable

from ..widgets.status import StatusBar
from ..widgets.text_view import TextView
from .base import DplScreen, error_title

if TYPE_CHECKING:
    from dpl_engine import Target
    from user_store import HistoryEntry, Item, UserHistory


def review_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def stars(rating: float) -> str:
    return f"{rating:g}★"


class UserScreen(DplScreen):
    BINDINGS = [
        Binding("escape", "back", "Users"),
        Binding("c", "comparisons", "Comparisons"),
        Binding("d", "differences", "Differences"),
        Binding("g", "generate", "Generate"),
        Binding("t", "toggle_target", "Target kind"),
    ]

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id
        self.history: UserHistory | None = None
        self.held_out: Target | None = None
        self.chosen_item: Item | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="user-body"):
            with Vertical(id="history-pane"):
                yield Label("History", id="history-title", classes="pane-title", markup=False)
                yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
                yield TextView("Review", id="review-text")
            with Vertical(id="target-pane"):
                yield Label("Target", classes="pane-title")
                with RadioSet(id="target-kind"):
                    yield RadioButton("Held-out latest review", value=True, id="kind-held")
                    yield RadioButton("Another item from the catalogue", id="kind-other")
                yield Static("Loading…", id="held-info", markup=False)
                with Vertical(id="other-item"):
                    yield Input(placeholder="Search the catalogue…", id="item-search")
                    yield OptionList(id="items")
                    with Horizontal(classes="field"):
                        yield Label("Rating", classes="field-label")
                        yield Input(
                            "5",
                            id="rating",
                            type="number",
                            validators=[Number(minimum=1, maximum=5)],
                        )
                    with Horizontal(classes="field"):
                        yield Label("Title", classes="field-label")
                        yield Input(placeholder="Title of the review to write", id="title")
                yield Static("", id="target-summary", markup=False)
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"User {self.user_id}"
        table = self.query_one("#history", DataTable)
        table.add_column("Item", key="item", width=18)
        table.add_column("Rating", key="rating")
        table.add_column("Review title", key="title", width=26)
        table.add_column("Date", key="date")
        self.query_one("#other-item").display = False
        self.load()
        self.search_items("")

    # -- loading ---------------------------------------------------------------------
    @work(
        thread=True,
        exclusive=True,
        group="user",
        exit_on_error=False,
        description="loading the user",
    )
    def load(self) -> None:
        worker = get_current_worker()
        store = self.dpl.store
        assert store is not None
        try:
            history = store.user_history(self.user_id)
        except Exception as err:
            self.app.call_from_thread(self._load_failed, err, "loading the history")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_history, history)
        try:
            held = self.dpl.engine().held_out_target(self.user_id)
        except Exception as err:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._held_failed, err)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_held, held)

    def _loaded(self, target: str) -> None:
        """The history and the target are shown (or why they cannot be): keys now act."""
        self.dpl.signal("ready", screen="user", user=self.user_id, target=target)

    def _load_failed(self, err: Exception, doing: str) -> None:
        self.query_one("#held-info", Static).update(Text(f"Could not load: {err}"))
        self.notify(str(err), title=error_title(err, doing), severity="error", markup=False)
        self._loaded("failed")

    def _held_failed(self, err: Exception) -> None:
        self.query_one("#held-info", Static).update(
            Text(f"No held-out target: {err}\nChoose another item from the catalogue.")
        )
        self.query_one("#kind-other", RadioButton).value = True
        self._loaded("none")

    def _show_history(self, history: UserHistory) -> None:
        self.history = history
        table = self.query_one("#history", DataTable)
        table.clear()
        latest = history.latest
        for entry in history.entries:
            r = entry.review
            mark = " (held out)" if entry is latest else ""
            table.add_row(
                Text(entry.item.title),
                Text(stars(r.rating)),
                Text(readable(r.title)),
                Text(review_date(r.timestamp) + mark),
                key=r.item_id,
            )
        self.query_one("#history-title", Label).update(
            Text(f"History of {history.user_id}: {len(history.entries)} reviews (oldest first)")
        )
        if history.entries:
            table.move_cursor(row=len(history.entries) - 1)
            self._show_entry(history.entries[-1])

    def _show_held(self, target: Target) -> None:
        self.held_out = target
        self.query_one("#held-info", Static).update(
            Text.assemble(
                ("Item: ", "bold"),
                target.item.title,
                "\n",
                ("Rating: ", "bold"),
                stars(target.rating),
                "\n",
                ("Title: ", "bold"),
                readable(target.title),
                "\n",
                (
                    "The real review is hidden from the method and shown beside the generated one.",
                    "italic",
                ),
            )
        )
        self._update_summary()
        self._loaded("held-out")

    @on(DataTable.RowHighlighted, "#history")
    def _row(self, event: DataTable.RowHighlighted) -> None:
        if self.history is None or event.row_key.value is None:
            return
        for entry in self.history.entries:
            if entry.review.item_id == event.row_key.value:
                self._show_entry(entry)

    def _show_entry(self, entry: HistoryEntry) -> None:
        r = entry.review
        body = Text.assemble(
            (readable(r.title) or "(no title)", "bold"),
            "  ",
            stars(r.rating),
            "  ",
            review_date(r.timestamp),
            "\n",
            (entry.item.title, "italic"),
            "\n\n",
            readable(r.text),
        )
        self.query_one("#review-text", TextView).set_text(body, title="Review")

    # -- choosing another item ---------------------------------------------------------
    @on(RadioSet.Changed, "#target-kind")
    def _kind(self, event: RadioSet.Changed) -> None:
        other = event.pressed.id == "kind-other"
        self.query_one("#other-item").display = other
        self.query_one("#held-info").display = not other
        self._update_summary()

    def action_toggle_target(self) -> None:
        other = self.query_one("#kind-other", RadioButton)
        if other.value:
            self.query_one("#kind-held", RadioButton).value = True
        else:
            other.value = True

    @on(Input.Changed, "#item-search")
    def _item_query(self, event: Input.Changed) -> None:
        self.search_items(event.value.strip())

    @work(
        thread=True,
        exclusive=True,
        group="items",
        exit_on_error=False,
        description="searching items",
    )
    def search_items(self, query: str) -> None:
        worker = get_current_worker()
        store = self.dpl.store
        assert store is not None
        try:
            items = store.items_not_reviewed_by(self.user_id, query=query, limit=50)
        except Exception as err:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._items_failed, err)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_items, items)

    def _items_failed(self, err: Exception) -> None:
        options = self.query_one("#items", OptionList)
        options.clear_options()
        options.add_option(Option(Text(f"search failed: {err}"), disabled=True))

    def _show_items(self, items: list[Item]) -> None:
        self._items = {item.id: item for item in items}
        options = self.query_one("#items", OptionList)
        options.clear_options()
        options.add_options([Option(Text(item.title), id=item.id) for item in items])
        if items:
            options.highlighted = 0

    @on(OptionList.OptionHighlighted, "#items")
    @on(OptionList.OptionSelected, "#items")
    def _item_chosen(self, event: OptionList.OptionHighlighted | OptionList.OptionSelected) -> None:
        item_id = event.option.id
        self.chosen_item = getattr(self, "_items", {}).get(item_id)
        self._update_summary()
        if isinstance(event, OptionList.OptionSelected):
            self.query_one("#title", Input).focus()

    @on(Input.Changed, "#rating")
    @on(Input.Changed, "#title")
    def _fields(self) -> None:
        self._update_summary()

    def _other_selected(self) -> bool:
        return self.query_one("#kind-other", RadioButton).value

    def _update_summary(self) -> None:
        summary = self.query_one("#target-summary", Static)
        if self._other_selected():
            item = self.chosen_item.title if self.chosen_item else "(choose an item)"
            rating = self.query_one("#rating", Input).value or "?"
            title = self.query_one("#title", Input).value or "(give a title)"
            summary.update(
                Text.assemble(("Generate for: ", "bold"), item, f" · {rating}★ · ", title)
            )
        elif self.held_out is not None:
            summary.update(Text.assemble(("Generate for: ", "bold"), "the held-out latest review"))
        else:
            summary.update("")

    # -- the target ---------------------------------------------------------------------
    def current_target(self) -> Target | None:
        """The chosen target, or None after telling the person what is missing."""
        if not self._other_selected():
            if self.held_out is None:
                self.notify(
                    "The held-out review is not loaded yet, or the user has none.",
                    title="No target yet",
                    severity="warning",
                )
            return self.held_out
        if self.chosen_item is None:
            self.notify(
                "Pick an item from the catalogue list first.",
                title="No item chosen",
                severity="warning",
            )
            return None
        rating_input = self.query_one("#rating", Input)
        try:
            rating = float(rating_input.value)
        except ValueError:
            rating = -1.0
        if not 1 <= rating <= 5:
            self.notify(
                f"Rating {rating_input.value!r} must be a number from 1 to 5.",
                title="Invalid rating",
                severity="error",
                markup=False,
            )
            rating_input.focus()
            return None
        title = self.query_one("#title", Input).value.strip()
        if not title:
            self.notify(
                "Give the review to write a title.", title="Missing title", severity="error"
            )
            self.query_one("#title", Input).focus()
            return None
        try:
            return self.dpl.engine().target(
                self.user_id, self.chosen_item.id, rating=rating, title=title
            )
        except Exception as err:
            self.notify(
                str(err),
                title=error_title(err, "choosing the target"),
                severity="error",
                markup=False,
            )
            return None

    def _open(self, screen_type: type) -> None:
        target = self.current_target()
        if target is None:
            return
        session = self.dpl.session
        if session is not None:
            session.set_target(target)
        self.app.push_screen(screen_type(target))

    def action_comparisons(self) -> None:
        from .comparison import ComparisonScreen

        self._open(ComparisonScreen)

    def action_differences(self) -> None:
        from .differences import DifferencesScreen

        self._open(DifferencesScreen)

    def action_generate(self) -> None:
        from .generate import GenerateScreen

        self._open(GenerateScreen)

    def action_back(self) -> None:
        self.dismiss()
