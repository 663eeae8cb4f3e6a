"""Snapshots of every screen at a fixed terminal size (pytest-textual-snapshot).

The app runs on the bundled sample with the scripted models, so every run draws the
same thing. After an intended change to a screen, review the diff report, then
accept with ``pytest tests/tui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

import pytest

from dpl_tui.screens.comparison import ComparisonScreen
from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.screens.generate import GenerateScreen
from dpl_tui.screens.help import HelpScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from dpl_tui.screens.welcome import WelcomeScreen
from tests.tui.conftest import wait_until
from tests.tui.test_user import USER

SIZE = (120, 36)


async def settled(pilot) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: app.activity == "" and app.model_status.startswith("fake"))
    await pilot.pause()  # until every pending message is handled


async def users_ready(pilot) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            isinstance(app.screen, UsersScreen) and app.screen.query_one("#users").row_count == 203
        ),
    )
    await settled(pilot)


async def user_ready(pilot) -> UserScreen:
    await users_ready(pilot)
    app = pilot.app
    app.open_user(USER)
    await wait_until(
        pilot, lambda: isinstance(app.screen, UserScreen) and app.screen.held_out is not None
    )
    await settled(pilot)
    return app.screen


@pytest.fixture
def app(sample_db, make_app):
    return make_app(sample_db)


def test_users_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=users_ready)


def test_users_screen_searching(snap_compare, app):
    async def run_before(pilot):
        await users_ready(pilot)
        await pilot.press("slash", *"tubescreamer")
        await wait_until(pilot, lambda: pilot.app.screen.query_one("#users").row_count < 203)
        await pilot.press("enter")
        await wait_until(pilot, lambda: pilot.app.focused is pilot.app.screen.query_one("#users"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_user_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=user_ready)


def test_user_screen_other_item(snap_compare, app):
    async def run_before(pilot):
        screen = await user_ready(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: screen.query_one("#items").option_count > 0)
        screen.query_one("#title").value = "Not for metal"
        screen.query_one("#rating").value = "2"
        screen.query_one("#items").focus()
        await wait_until(pilot, lambda: pilot.app.focused is screen.query_one("#items"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_comparison_screen(snap_compare, app):
    async def run_before(pilot):
        await user_ready(pilot)
        await pilot.press("c")
        await wait_until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, ComparisonScreen) and pilot.app.screen.view is not None
            ),
        )
        await settled(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_differences_screen(snap_compare, sample_db, make_app, monkeypatch):
    """The measured account first; the model's emotional entry only echoes the prompt, so it
    is dimmed with its reason, the count says how many are, and the way to a better model is
    named. The step times are drawn on a stopped clock, so they read the same every run."""
    from dpl_tui.widgets import step_times
    from tests.engine.fakes import FakeGenerator

    monkeypatch.setattr(step_times, "now", lambda: 0.0)

    echo = {
        "writing": "Plainer words, shorter sentences.",
        "emotional": "emotional style: sentiment and tone",
        "semantic": "Fewer details about the product.",
    }
    app = make_app(sample_db, generator=FakeGenerator(differences=echo))

    async def run_before(pilot):
        await user_ready(pilot)
        await pilot.press("d")
        await wait_until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, DifferencesScreen)
                and pilot.app.screen.view is not None
            ),
        )
        await settled(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_generate_screen(snap_compare, app):
    async def run_before(pilot):
        await user_ready(pilot)
        await pilot.press("g")
        await wait_until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, GenerateScreen) and pilot.app.screen.result is not None
            ),
        )
        stats = pilot.app.screen.query_one("#gen-stats")
        await wait_until(pilot, lambda: "ROUGE-1" in str(stats.content))
        await settled(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, app):
    async def run_before(pilot):
        await users_ready(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_welcome_screen(snap_compare, make_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path keeps the shown path the same on every run
    app = make_app("empty.db")

    async def run_before(pilot):
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, WelcomeScreen))
        await settled(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
