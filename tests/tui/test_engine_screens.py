"""Comparison, differences and generate screens on the real engine and store, with
scripted models: progress, streaming, cancelling, regenerating, stale work, export."""

from __future__ import annotations

import json
import time

from textual.widgets import DataTable, OptionList, Select, Static

from dpl_tui.messages import StepProgressed
from dpl_tui.screens.comparison import ComparisonScreen
from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.screens.generate import GenerateScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from dpl_tui.widgets.step_progress import StepProgress
from dpl_tui.widgets.text_view import TextView
from tests.engine.fakes import FakeGenerator
from tests.tui.conftest import screen_text, slow_generator, wait_until
from tests.tui.test_user import USER, open_user
from user_store.text import readable


async def test_comparisons_show_users_reviews_and_measures(sample_db, make_app):
    seen: list = []
    app = make_app(sample_db)
    async with app.run_test(size=(140, 42), message_hook=seen.append) as pilot:
        await open_user(app, pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ComparisonScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None)
        view = screen.view
        assert len(view.retrieved) == app.settings.k
        assert view.comparisons, "the sample user has items other users reviewed"
        # Progress messages collapse while queued (a later step replaces an earlier one that
        # was not shown yet), so only the last step is sure to arrive.
        steps = {m.event.step for m in seen if isinstance(m, StepProgressed)}
        assert "compare" in steps and steps <= {"retrieve", "embed", "compare"}
        # The list holds the comparison items, each marked when it is also a retrieved review.
        options = screen.query_one("#cmp-items", OptionList)
        assert options.option_count == len(view.comparisons) <= app.settings.k
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        for c, prompt in zip(view.comparisons, prompts, strict=True):
            assert ("also retrieved" in prompt) == (c.item.id in view.also_retrieved)
        assert view.eligible >= len(view.comparisons)
        first = view.comparisons[0]
        users = screen.query_one("#cmp-users", DataTable)
        assert users.row_count == len(first.users)
        assert [str(users.get_row_at(i)[0]) for i in range(users.row_count)] == [
            u.user_id for u in first.users
        ]
        assert USER not in {u.user_id for u in first.users}
        own, other = first.user_review.text, first.users[0].review.text
        assert screen.query_one("#own-review", TextView).text.endswith(readable(own))
        assert screen.query_one("#other-review", TextView).text.endswith(readable(other))
        measured = screen.query_one("#measured", DataTable)
        assert measured.row_count == 7
        # the session keeps what was computed, for export
        assert app.session.comparisons == view.comparisons
        # a second visit is served from the cache
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))
        seen.clear()
        await pilot.press("c")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ComparisonScreen) and app.screen.view is not None
        )
        # (progress messages may collapse in the queue, so look at whichever arrived)
        steps = [
            m.event
            for m in seen
            if isinstance(m, StepProgressed)
            and m.event.step in ("embed", "compare")
            and m.event.i > 0
        ]
        assert steps and all(e.cached for e in steps)


async def test_differences_one_column_per_dimension_and_profile(sample_db, make_app):
    generator = FakeGenerator()
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None)
        assert generator.calls["differences"] == len(screen.view.comparisons) > 0
        # every item once: rows streamed in while the calls ran are replaced by the final ones
        await wait_until(
            pilot, lambda: len(screen.query(".diff-cell")) == 3 * len(screen.view.differences)
        )
        await wait_until(pilot, lambda: "Plainer words" in screen_text(app))
        text = screen_text(app)
        for header in ("Writing style", "Emotional style", "Semantic style"):
            assert header in text
        assert "Plainer words, shorter sentences." in text
        assert (
            screen.query_one("#profile", TextView).text
            == "Writes short, upbeat reviews about gear."
        )
        assert app.session.profile == screen.view.profile


async def test_differences_kept_as_free_text_when_json_fails(sample_db, make_app):
    app = make_app(sample_db, generator=FakeGenerator(json_ok=False))
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, DifferencesScreen) and app.screen.view is not None
        )
        assert not any(d.structured for d in app.screen.view.differences)
        await wait_until(pilot, lambda: "They write longer and angrier." in screen_text(app))
        assert "free text" in screen_text(app)


async def test_escape_stops_a_differences_call_in_the_middle(sample_db, make_app):
    tokens: list[float] = []

    def json_token() -> None:  # one differences call takes 20 x 0.5 s = 10 s
        tokens.append(time.monotonic())
        time.sleep(0.5)

    generator = FakeGenerator(on_json_token=json_token)
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: len(tokens) >= 2)
        screen = app.screen
        await pilot.press("escape")  # cancels the running step; the screen stays
        await wait_until(pilot, lambda: not screen.running, timeout=8.0)
        assert app.screen is screen and screen.view is None
        await wait_until(pilot, lambda: "Cancelled. Press r" in screen_text(app))
        # The first call was left after a few of its 20 tokens; no further call started.
        assert generator.calls["differences"] == 1 and len(tokens) < 20


async def test_generate_streams_cancels_and_regenerates(sample_db, make_app):
    # Slow tokens (75 s for the review) until the cancel, so it lands mid-stream on any
    # machine; fast ones for the regeneration.
    pace = [0.5]
    review = " ".join(f"word{i}" for i in range(150))
    generator = FakeGenerator(review=review, on_token=lambda: time.sleep(pace[0]))
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(140, 42)) as pilot:
        user_screen = await open_user(app, pilot)
        held = user_screen.held_out
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, GenerateScreen))
        screen = app.screen
        view = screen.query_one("#generated", TextView)
        # tokens arrive one message each and appear while the generation is still running
        await wait_until(pilot, lambda: len(view.text.split()) >= 5)
        assert screen.running and screen.result is None
        partial = view.text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running)
        assert isinstance(app.screen, GenerateScreen), "Escape cancels first, it does not leave"
        assert "Cancelled" in screen.query_one(StepProgress).label_text
        assert screen.result is not None and screen.result.cancelled
        assert generator.streams[-1].closed_early
        assert partial in view.text and len(view.text.split()) < 150
        assert app.session.results == []
        # the real review is beside it
        assert screen.query_one("#real", TextView).text.endswith(held.held_out.text)

        # regenerate runs to completion and scores against the held-out review
        pace[0] = 0.01
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.result is not None and not screen.running, 30)
        result = screen.result
        assert not result.cancelled and result.method == "dpl"
        assert screen.tokens == 150, "one message per token, none collapsed"
        assert view.text == result.text == generator.streams[-1].text
        await wait_until(
            pilot, lambda: "ROUGE-1" in str(screen.query_one("#gen-stats", Static).content)
        )
        assert app.session.results == [result] and 0 in app.session.scores
        # the app is still usable: switch method and go back
        await pilot.press("m")
        assert screen.query_one("#method", Select).value == "profile"
        assert app.settings.method == "profile"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))


async def test_generate_failure_is_a_notification(sample_db, make_app):
    class Broken(FakeGenerator):
        def stream(self, messages, params):
            from models import ModelError

            raise ModelError("the model file went away; choose another with Ctrl+P")

    app = make_app(sample_db, generator=Broken())
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        app.set_method("rag")
        await pilot.press("g")
        await wait_until(
            pilot, lambda: isinstance(app.screen, GenerateScreen) and not app.screen.running
        )
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "Model error" in errors[-1].title
        assert "went away" in errors[-1].message
        assert "Failed" in app.screen.query_one(StepProgress).label_text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))


async def test_switching_user_cancels_stale_work(sample_db, make_app):
    # A review that would take 1,000 s to stream: only a cancel can end it early.
    generator = slow_generator(delay_s=0.05, words=20_000)
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        app.set_method("rag")
        await pilot.press("g")
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, GenerateScreen)
                and len(generator.streams) == 1
                and generator.streams[0].text
            ),
        )
        stream = generator.streams[0]
        # back to the users (screens pop: their workers are cancelled) and another user
        app.pop_screen()
        app.pop_screen()
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        app.open_user("A15TYOEWBQYF0X")
        await wait_until(pilot, lambda: stream.stats is not None)
        assert stream.closed_early and len(stream.text.split()) < 20_000
        assert app.session.user_id == "A15TYOEWBQYF0X" and app.session.results == []


async def test_export_markdown_and_json(sample_db, make_app, tmp_path):
    app = make_app(sample_db)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("g")
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, GenerateScreen)
                and app.screen.result is not None
                and not app.screen.running
            ),
        )
        result = app.screen.result
        for fmt, name in (("markdown", "out.md"), ("json", "out.json")):
            await pilot.press("e")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "ExportDialog")
            if fmt == "json":
                await pilot.click("#fmt-json")
            path_input = app.screen.query_one("#export-path")
            out = tmp_path / name
            path_input.value = str(out)
            await pilot.click("#export")
            await wait_until(pilot, out.exists)
        md = (tmp_path / "out.md").read_text()
        assert f"# dpl export: user {USER}" in md
        assert "## Differences" in md and "Plainer words" in md
        assert "## Profile (dpl)" in md and result.text in md
        assert "## All stored generations" in md
        data = json.loads((tmp_path / "out.json").read_text())
        assert data["user_id"] == USER
        assert data["generations"][0]["text"] == result.text
        assert data["differences"][0]["writing"] == "Plainer words, shorter sentences."
        assert data["comparisons"][0]["users"][0]["user_id"]
        assert data["target"]["held_out"]["user_id"] == USER
