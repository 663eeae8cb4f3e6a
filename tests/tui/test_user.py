"""The user screen: history with full text, the held-out target, and choosing another item."""

from __future__ import annotations

from textual.widgets import DataTable, Input, OptionList

from dpl_tui.screens.comparison import ComparisonScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.widgets.text_view import TextView
from tests.tui.conftest import screen_text, wait_until
from user_store import UserStore

USER = "A2EZWZ8MBEDOLN"


async def open_user(app, pilot, user_id: str = USER) -> UserScreen:
    await wait_until(pilot, lambda: app.store is not None and app.screen.id != "_default")
    app.open_user(user_id)
    await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))
    screen = app.screen
    await wait_until(pilot, lambda: screen.held_out is not None)
    return screen


async def test_history_and_held_out_target(sample_db, make_app):
    with UserStore(sample_db) as store:
        history = store.user_history(USER)
    app = make_app(sample_db)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_user(app, pilot)
        table = screen.query_one("#history", DataTable)
        assert table.row_count == len(history.entries)
        latest = history.latest
        assert screen.held_out.item.id == latest.item.id
        assert screen.held_out.rating == latest.review.rating
        assert screen.held_out.title == latest.review.title
        assert screen.held_out.held_out == latest.review
        # the latest review is highlighted and its full text shown
        view = screen.query_one("#review-text", TextView)
        await wait_until(pilot, lambda: view.text.endswith(latest.review.text))
        table.focus()
        await pilot.press(*["up"] * (len(history.entries) - 1))
        first = history.entries[0].review
        await wait_until(
            pilot, lambda: first.text in screen.query_one("#review-text", TextView).text
        )
        assert latest.review.title in screen_text(app)


async def test_choose_another_item_with_rating_and_title(sample_db, make_app):
    with UserStore(sample_db) as store:
        candidates = store.items_not_reviewed_by(USER, limit=5)
    app = make_app(sample_db)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_user(app, pilot)
        await pilot.press("t")
        assert screen.query_one("#other-item").display
        items = screen.query_one("#items", OptionList)
        await wait_until(pilot, lambda: items.option_count > 0)
        # the most reviewed unreviewed item is offered first; without a title, a clear error
        assert screen.chosen_item == candidates[0]
        await pilot.press("c")
        assert isinstance(app.screen, UserScreen)
        assert any(n.title == "Missing title" for n in app._notifications)

        search = screen.query_one("#item-search", Input)
        search.focus()
        await pilot.press(*candidates[3].id[:7])
        await wait_until(
            pilot,
            lambda: (
                items.option_count > 0
                and items.get_option_at_index(0).id.startswith(candidates[3].id[:7])
            ),
        )
        items.focus()
        await pilot.press("enter")
        chosen = screen.chosen_item
        assert chosen is not None and chosen.id.startswith(candidates[3].id[:7])
        assert app.focused is screen.query_one("#title", Input)
        # a bad rating is refused with the value named
        rating = screen.query_one("#rating", Input)
        rating.value = "7"
        items.focus()
        await pilot.press("c")
        assert isinstance(app.screen, UserScreen)
        assert any("'7'" in str(n.message) for n in app._notifications)
        rating.value = "2"
        screen.query_one("#title", Input).value = "Broke after a week"
        screen.query_one("#items", OptionList).focus()
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ComparisonScreen))
        target = app.screen.target
        assert (target.item.id, target.rating, target.title) == (
            chosen.id,
            2.0,
            "Broke after a week",
        )
        assert target.held_out is None
        assert app.session.target == target
