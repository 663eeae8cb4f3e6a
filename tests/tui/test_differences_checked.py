"""The differences screen puts the measured account before the model's differences and dims
the model's entries that say nothing, with the reason (real engine and store, scripted model)."""

from __future__ import annotations

from textual.widgets import Static

from dpl_engine.method import describe
from dpl_tui.screens.differences import BETTER_MODEL, DifferencesScreen
from dpl_tui.widgets.text_view import TextView
from tests.engine.fakes import FakeGenerator
from tests.tui.conftest import screen_text, wait_until
from tests.tui.test_user import open_user

ECHO = {
    "writing": "Plainer words, shorter sentences.",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "Fewer details about the product.",
}


async def test_measured_account_first_and_an_echo_dimmed_with_its_reason(sample_db, make_app):
    app = make_app(sample_db, generator=FakeGenerator(differences=ECHO))
    async with app.run_test(size=(140, 50)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, DifferencesScreen) and app.screen.view is not None
        )
        screen = app.screen
        view = screen.view
        assert view.accounts and len(view.accounts) == len(view.differences)
        measured = screen.query_one("#measured-account", TextView)
        for a in view.accounts:
            assert a.text in measured.text
            assert (
                a.text
                == describe.account(next(m for m in view.measured if m.item_id == a.item_id)).text
            )
        # The measured account sits above the model's differences.
        grid = screen.query_one("#diff-grid")
        assert measured.region.y < grid.region.y
        await wait_until(pilot, lambda: "uninformative:" in screen_text(app))
        text = screen_text(app)
        assert text.index("Measured differences") < text.index("The model's differences")
        # the emotional entry of every item; a grid being redrawn (the view refreshed by the
        # background preparation) may hold the old cells a moment longer: wait for one grid
        await wait_until(pilot, lambda: len(screen.query(".diff-flagged")) == len(view.differences))
        flagged = list(screen.query(".diff-flagged"))
        for cell in flagged:
            shown = str(cell.render())
            assert "emotional style: sentiment and tone" in shown
            assert "uninformative: echoes the dimension's name or description" in shown
        kept = [c for c in screen.query(".diff-cell") if "Plainer words" in str(c.render())]
        assert kept and not any(c.has_class("diff-flagged") for c in kept)
        assert str(screen.query_one("#diff-hint", Static).render()) == BETTER_MODEL
        assert f"{len(flagged)} of {3 * len(view.differences)} model entries uninformative" in (
            screen_text(app)
        )


async def test_no_hint_when_every_entry_says_something(sample_db, make_app):
    app = make_app(sample_db, generator=FakeGenerator())
    async with app.run_test(size=(140, 50)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, DifferencesScreen) and app.screen.view is not None
        )
        await wait_until(pilot, lambda: "profile ready" in screen_text(app))
        assert not app.screen.query(".diff-flagged")
        assert str(app.screen.query_one("#diff-hint", Static).render()) == ""
