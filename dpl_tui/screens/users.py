"""All users: incremental search (full-text over reviews and items, prefix over ids)
and sorting; Enter opens one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Label
from textual.worker import get_current_worker

from ..widgets.status import StatusBar
from .base import DplScreen, error_title

if TYPE_CHECKING:
    from user_store import UserSummary

COLUMNS = [
    ("user", "User", lambda u: u.user_id),
    ("reviews", "Reviews", lambda u: u.review_count),
    ("rating", "Avg rating", lambda u: u.avg_rating),
    ("comparable", "Comparable items", lambda u: u.comparable_items),
]
SORT_KEYS = [key for key, _, _ in COLUMNS]
LIMIT = 5000


class UsersScreen(DplScreen):
    BINDINGS = [
        Binding("slash", "focus_search", "Search", key_display="/"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", key_display="shift+s"),
        Binding("enter", "open_user", "Open user"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.users: list[UserSummary] = []
        self.sort_key = "reviews"
        self.descending = True
        self.query_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="users-bar"):
            yield Input(placeholder="Search user ids, review and item text…", id="search")
            yield Label("", id="users-count", markup=False)
        yield DataTable(id="users", cursor_type="row", zebra_stripes=True)
        yield StatusBar()
        yield Footer()

    def on_screen_resume(self) -> None:
        self.dpl.preparer.leave()  # no user is open while the list is shown

    def on_mount(self) -> None:
        self.sub_title = "Users"
        table = self.query_one("#users", DataTable)
        for key, label, _ in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.reload()

    def reload(self) -> None:
        self.search(self.query_text)

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.search(self.query_text)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#users", DataTable).focus()

    @work(
        thread=True,
        exclusive=True,
        group="users",
        exit_on_error=False,
        description="searching users",
    )
    def search(self, query: str) -> None:
        worker = get_current_worker()
        store = self.dpl.store
        if store is None:
            return
        try:
            users = store.users(search=query or None, m=self.dpl.settings.m, limit=LIMIT)
        except Exception as err:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._search_failed, query, err)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, query, users)

    def _search_failed(self, query: str, err: Exception) -> None:
        self.users = []
        self._fill()
        self.query_one("#users-count", Label).update(Text(f"search {query!r} failed"))
        self.notify(
            str(err), title=error_title(err, "searching users"), severity="error", markup=False
        )

    def _show(self, query: str, users: list[UserSummary]) -> None:
        if query != self.query_text:
            return
        self.users = users
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#users", DataTable)
        getter = dict((k, g) for k, _, g in COLUMNS)[self.sort_key]
        ordered = sorted(self.users, key=getter, reverse=self.descending)
        table.clear()
        for u in ordered:
            table.add_row(
                Text(u.user_id),
                Text(str(u.review_count), justify="right"),
                Text(f"{u.avg_rating:.2f}", justify="right"),
                Text(str(u.comparable_items), justify="right"),
                key=u.user_id,
            )
        arrow = "↓" if self.descending else "↑"
        label = dict((k, lbl) for k, lbl, _ in COLUMNS)[self.sort_key]
        more = "+" if len(self.users) >= LIMIT else ""
        self.query_one("#users-count", Label).update(
            Text(f"{len(ordered)}{more} users · sorted by {label} {arrow}")
        )
        self.dpl.signal("ready", screen="users", rows=len(ordered), query=self.query_text)

    # -- sorting --------------------------------------------------------------
    def sort_by(self, key: str, descending: bool | None = None) -> None:
        if descending is None:
            descending = not self.descending if key == self.sort_key else key != "user"
        self.sort_key, self.descending = key, descending
        self._fill()

    def action_cycle_sort(self) -> None:
        key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.sort_by(key, key != "user")

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_key, not self.descending)

    @on(DataTable.HeaderSelected, "#users")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    # -- opening ----------------------------------------------------------------
    @on(DataTable.RowSelected, "#users")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.dpl.open_user(str(event.row_key.value))

    def action_open_user(self) -> None:
        table = self.query_one("#users", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.dpl.open_user(str(key.value))

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.value:
            search.value = ""
        self.query_one("#users", DataTable).focus()
