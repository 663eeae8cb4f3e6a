"""The users screen: the table, incremental FTS search, sorting, opening a user."""

from __future__ import annotations

from textual.widgets import DataTable

from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from tests.tui.conftest import wait_until
from user_store import UserStore


def rows(app) -> list[list[str]]:
    table = app.screen.query_one("#users", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_table_lists_every_user_with_counts(sample_db, make_app):
    with UserStore(sample_db) as store:
        expected = {u.user_id: u for u in store.users(m=4)}
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen) and len(rows(app)) > 0)
        shown = rows(app)
        assert len(shown) == len(expected) == 203
        for user_id, reviews, rating, comparable in shown[:20]:
            u = expected[user_id]
            assert int(reviews) == u.review_count
            assert float(rating) == round(u.avg_rating, 2)
            assert int(comparable) == u.comparable_items
        counts = [int(r[1]) for r in shown]
        assert counts == sorted(counts, reverse=True)


async def test_search_filters_incrementally(sample_db, make_app):
    with UserStore(sample_db) as store:
        by_word = {u.user_id for u in store.users(search="tubescreamer", m=4)}
        one = store.users(m=4)[57].user_id
    assert 0 < len(by_word) < 203
    app = make_app(sample_db, preload_models=False)
    announced: list[tuple[str, str]] = []
    app.signal = lambda state, **d: announced.append((d.get("screen"), d.get("query")))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: len(rows(app)) == 203)
        await pilot.press("slash")
        await pilot.press(*"tubescreamer")
        await wait_until(pilot, lambda: {r[0] for r in rows(app)} == by_word)
        # clearing the box brings everyone back; an id prefix finds that user
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(rows(app)) == 203)
        await pilot.press("slash")
        await pilot.press(*one)
        await wait_until(pilot, lambda: [r[0] for r in rows(app)] == [one])
        # a query FTS cannot parse is quoted, not an error
        await pilot.press("backspace", *' "(*')
        broken = one[:-1] + ' "(*'
        await wait_until(pilot, lambda: ("users", broken) in announced)
        assert isinstance(app.screen, UsersScreen)
        assert "failed" not in str(app.screen.query_one("#users-count").content)
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_sorting_by_key_and_header(sample_db, make_app):
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: len(rows(app)) == 203)
        await pilot.press("s")  # reviews -> average rating
        ratings = [float(r[2]) for r in rows(app)]
        assert ratings == sorted(ratings, reverse=True) and ratings[0] > ratings[-1]
        await pilot.press("S")
        ratings = [float(r[2]) for r in rows(app)]
        assert ratings == sorted(ratings)
        screen = app.screen
        assert isinstance(screen, UsersScreen)
        screen.sort_by("user")
        ids = [r[0] for r in rows(app)]
        assert ids == sorted(ids)
        await pilot.click("#users", offset=(50, 0))  # the "Comparable items" header
        comparable = [int(r[3]) for r in rows(app)]
        assert comparable == sorted(comparable, reverse=True)


async def test_enter_opens_the_highlighted_user(sample_db, make_app):
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: len(rows(app)) == 203)
        await pilot.press("down", "down")
        second = rows(app)[2][0]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))
        assert app.screen.user_id == second
        assert app.session is not None and app.session.user_id == second
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
