"""The main flow with the real parts: the bundled sample in SQLite, the bundled
SmolLM2 GGUF through llama.cpp and all-MiniLM-L6-v2 through sentence-transformers.

Open a user from the table, open the comparisons, extract the differences, generate
while tokens stream, cancel with Escape, regenerate to the end (outputs kept short)."""

from __future__ import annotations

import pytest

from dpl_engine.evaluation.metrics import rouge
from dpl_tui.screens.comparison import ComparisonScreen
from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.screens.generate import GenerateScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from dpl_tui.widgets.step_progress import StepProgress
from dpl_tui.widgets.text_view import TextView
from tests.differences_check import assert_read
from tests.tui.conftest import wait_until

pytestmark = pytest.mark.slow
USER = "ADH0O8UVJOT10"
SLOW = 600.0
"""A deadline for a step with the real model, not a wait: generous, for a busy machine."""


def short_engine(store, generator, embedder, config):
    from dataclasses import replace

    from dpl_engine import Engine
    from models import SamplingParams

    config = replace(
        config,
        generation=SamplingParams(max_tokens=160, seed=7),
        analysis=SamplingParams(max_tokens=120, seed=7),
    )
    return Engine(store, generator, embedder, config)


async def test_main_flow_with_bundled_models(sample_db, bundled_generator, bundled_embedder):
    from dpl_tui.app import DplApp
    from user_store.config import Settings

    Settings(k=2).save()  # two comparison items (of 8 eligible): three calls before the review

    app = DplApp(
        db_path=sample_db,
        generator_factory=lambda _choice: bundled_generator,
        embedder_factory=lambda _path: bundled_embedder,
        engine_factory=short_engine,
    )
    async with app.run_test(size=(140, 42)) as pilot:
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, UsersScreen)
                and app.screen.query_one("#users").row_count == 203
            ),
        )
        await wait_until(pilot, lambda: "SmolLM2" in app.model_status, SLOW)
        assert app.gpu_status.startswith("off") or app.gpu_status.startswith("on")
        await pilot.press("slash", *USER, "enter", "enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, UserScreen) and app.screen.held_out is not None
        )
        held = app.screen.held_out

        await pilot.press("c")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ComparisonScreen) and app.screen.view is not None,
            SLOW,
        )
        comparisons = app.screen.view.comparisons
        assert len(comparisons) == 2 and all(0 < len(c.users) <= 4 for c in comparisons)
        assert all(USER not in {u.user_id for u in c.users} for c in comparisons)

        await pilot.press("d")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, DifferencesScreen) and app.screen.view is not None,
            SLOW,
        )
        view = app.screen.view
        assert len(view.differences) == len(comparisons)
        assert_read(view.differences, max_fallback_share=0.0)
        assert view.profile.text.strip()
        assert app.screen.query_one("#profile", TextView).text == view.profile.text

        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, GenerateScreen))
        screen = app.screen
        generated = screen.query_one("#generated", TextView)
        await wait_until(pilot, lambda: screen.tokens >= 3, SLOW)
        assert screen.running, "tokens are shown while the model is still generating"
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running, SLOW)
        assert isinstance(app.screen, GenerateScreen)
        assert screen.result is not None and screen.result.cancelled
        assert screen.result.stats.finish_reason == "cancelled"
        assert "Cancelled" in screen.query_one(StepProgress).label_text

        await pilot.press("r")
        await wait_until(
            pilot,
            lambda: (
                screen.result is not None and not screen.running and not screen.result.cancelled
            ),
            SLOW,
        )
        result = screen.result
        assert result.text.strip() and generated.text == result.text
        assert result.model_id == bundled_generator.model_id
        assert result.differences and result.profile is not None
        assert held.held_out.text not in "".join(m["content"] for m in result.messages)
        stats = screen.query_one("#gen-stats")
        await wait_until(pilot, lambda: "ROUGE-L" in str(stats.content), SLOW)
        expected = rouge(result.text, held.held_out.text)
        assert app.session.scores[0]["rouge1"] == pytest.approx(expected[0])
        assert app.session.scores[0]["rougeL"] == pytest.approx(expected[1])
        with_store = app.store.generations(USER, held.item.id)
        assert any(g.text == result.text for g in with_store)


async def test_background_preparation_with_bundled_models(
    sample_db, bundled_generator, bundled_embedder
):
    """Opening a user prepares its differences with the real models; pressing d then shows
    them without another call to the model from the screen."""
    import threading

    from dpl_tui.app import DplApp
    from tests.engine.fakes import RecordingGenerator
    from tests.tui.test_user import open_user
    from user_store.config import Settings

    class ByThread(RecordingGenerator):
        def __init__(self, inner):
            super().__init__(inner)
            self.threads: list[str] = []

        def stream(self, messages, params):
            self.threads.append(threading.current_thread().name)
            return super().stream(messages, params)

        def complete_json(self, messages, schema, params, **kw):
            self.threads.append(threading.current_thread().name)
            return super().complete_json(messages, schema, params, **kw)

    Settings(k=2).save()  # two comparison items for the default target: three calls
    generator = ByThread(bundled_generator)
    app = DplApp(
        db_path=sample_db,
        generator_factory=lambda _choice: generator,
        embedder_factory=lambda _path: bundled_embedder,
        engine_factory=short_engine,
        prepare_ahead=True,
    )
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot, USER)
        await wait_until(pilot, lambda: app.preparer.target_ready(USER), SLOW)
        assert generator.calls["json"] == 2 and generator.calls["stream"] == 1  # and profile
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None, SLOW)
        assert len(screen.view.differences) == 2 and screen.view.profile.text
        assert_read(screen.view.differences, max_fallback_share=0.0)
        assert set(generator.threads) == {"dpl-prepare"}  # the screen called nothing


async def test_the_measured_account_comes_before_the_first_differences_answer(
    sample_db, bundled_generator, bundled_embedder
):
    """With the bundled models and k = 2, the differences screen shows the measured account
    while the first differences call is still held; the real calls then fill in the rest and
    the profile arrives delta by delta."""
    import threading

    from dpl_engine import TokenEvent
    from dpl_engine.method import describe
    from dpl_tui.app import DplApp
    from dpl_tui.messages import StepProgressed
    from dpl_tui.widgets.step_times import StepTimes
    from tests.engine.fakes import RecordingGenerator
    from tests.tui.test_user import open_user
    from user_store.config import Settings

    class HeldFirst(RecordingGenerator):
        """The real model; its differences calls start once the test opens ``gate``."""

        def __init__(self, inner):
            super().__init__(inner)
            self.gate = threading.Event()
            self.held = 0
            self.returned = 0

        def complete_json(self, messages, schema, params, **kw):
            self.held += 1
            self.gate.wait(SLOW)
            try:
                return super().complete_json(messages, schema, params, **kw)
            finally:  # with an answer, or with no valid JSON (kept as free text)
                self.returned += 1

    Settings(k=2).save()
    generator = HeldFirst(bundled_generator)
    seen: list = []
    app = DplApp(
        db_path=sample_db,
        generator_factory=lambda _choice: generator,
        embedder_factory=lambda _path: bundled_embedder,
        engine_factory=short_engine,
    )
    async with app.run_test(size=(140, 42), message_hook=seen.append) as pilot:
        await open_user(app, pilot, USER)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.measured_shown and generator.held == 1, SLOW)
        assert generator.returned == 0
        measured = screen.query_one("#measured-account", TextView).text
        sets = {
            m.event.value.item.id: m.event.value
            for m in seen
            if isinstance(m, StepProgressed) and m.event.step == "compare" and m.event.value
        }
        assert len(sets) == 2
        overall, accounts = describe.accounts(app.engine().measured(list(sets.values())))
        assert overall.text in measured and all(a.text in measured for a in accounts)

        generator.gate.set()
        await wait_until(pilot, lambda: screen.view is not None, SLOW)
        assert generator.returned == 2 and len(screen.view.differences) == 2
        assert_read(screen.view.differences, max_fallback_share=0.0)
        assert screen.query_one("#measured-account", TextView).text == measured
        deltas = [
            m
            for m in seen
            if isinstance(m, StepProgressed) and isinstance(m.event.value, TokenEvent)
        ]
        assert deltas and screen.view.profile.text.strip()
        assert "differences 2/2" in screen.query_one(StepTimes).text
