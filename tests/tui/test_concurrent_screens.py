"""The differences screen with a backend that serves several calls at once: each item's
differences appear as soon as they arrive, and Escape stops every call in flight. And a
registered server is what the app loads when it is the chosen model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dpl_tui.screens.differences import DifferencesScreen
from models import ChatMessage, GenerationCancelled, GenerationStats, SamplingParams
from tests.engine.fakes import FakeEmbedder, FakeGenerator
from tests.tui.conftest import screen_text, wait_until
from tests.tui.test_user import open_user
from user_store.config import Settings

DEADLINE_S = 20.0


class GatedBackend(FakeGenerator):
    """Two calls at once; every differences call but the first waits for ``gate``."""

    concurrency = 2

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started = 0
        self.stopped = 0

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        with self.lock:
            self.started += 1
            n = self.started
        if n > 1:
            end = time.monotonic() + DEADLINE_S
            while not self.gate.is_set() and time.monotonic() < end:
                if stop is not None and stop():
                    with self.lock:
                        self.stopped += 1
                    raise GenerationCancelled("gated: stopped")
                time.sleep(0.01)
        return super().complete_json(messages, schema, params, retries=retries, stop=stop)


async def test_each_items_differences_show_as_soon_as_they_arrive(sample_db, make_app):
    backend = GatedBackend()
    app = make_app(sample_db, generator=backend)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        # The first item's row is on screen while the others are still being computed.
        await wait_until(pilot, lambda: len(screen.query(".diff-cell")) == 3)
        await wait_until(pilot, lambda: "Plainer words, shorter sentences." in screen_text(app))
        assert screen.view is None and screen.running and backend.started >= 2
        # The items still being computed have their rows, marked pending (the first row's
        # pending cells leave the DOM on a later refresh than its filled cells arrive).
        await wait_until(
            pilot, lambda: len(screen.query(".diff-pending")) == 3 * (len(screen._rows) - 1)
        )
        assert len(screen._rows) >= 2
        assert "pending…" in screen_text(app)
        backend.gate.set()
        await wait_until(pilot, lambda: screen.view is not None)
        # the streamed rows are replaced by the final ones, each item once (the removal of
        # the streamed rows completes on a later refresh)
        await wait_until(
            pilot, lambda: len(screen.query(".diff-cell")) == 3 * len(screen.view.differences)
        )
        assert len(screen.view.differences) == backend.calls["differences"] >= 2


class OneAtATime(GatedBackend):
    concurrency = 1


async def test_cancelling_keeps_the_finished_items_and_marks_the_rest(sample_db, make_app):
    backend = OneAtATime()
    app = make_app(sample_db, generator=backend)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        # The first call has finished, the second waits at the gate: one row filled.
        await wait_until(pilot, lambda: len(screen.query(".diff-cell")) == 3)
        await wait_until(pilot, lambda: backend.started == 2)
        await wait_until(
            pilot, lambda: len(screen.query(".diff-pending")) == 3 * (len(screen._rows) - 1)
        )
        items = len(screen._rows)
        assert items >= 2
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running)
        await wait_until(pilot, lambda: "not computed: cancelled" in screen_text(app))
        assert len(screen.query(".diff-cell")) == 3  # the finished row stays
        assert backend.calls["differences"] == 1

        # Opening the screen again computes only the items that were not finished.
        backend.gate.set()
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, DifferencesScreen))
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        again = app.screen
        await wait_until(pilot, lambda: again.view is not None)
        assert len(again.view.differences) == items
        assert backend.calls["differences"] == items


async def test_escape_stops_every_differences_call_in_flight(sample_db, make_app):
    backend = GatedBackend()
    backend.started = 1  # every call waits at the gate
    app = make_app(sample_db, generator=backend)
    async with app.run_test(size=(140, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: backend.started == 3)  # two calls in flight
        screen = app.screen
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running)
        await wait_until(pilot, lambda: backend.stopped == 2)
        assert backend.started == 3  # no call was sent after the cancel
        assert screen.view is None
        assert "Cancelled. Press r" in screen_text(app)


async def test_the_app_loads_a_registered_server_as_its_model(sample_db):
    from dpl_tui.app import DplApp
    from dpl_tui.screens.dialogs import ModelDialog
    from tests.models.fake_openai import FakeOpenAI

    with FakeOpenAI(models=("served-7b",)).running() as fake:
        settings = Settings.load()
        settings.servers["lab"] = {"url": fake.url, "model": "served-7b", "concurrency": 4}
        settings.model = "lab"
        settings.save()
        app = DplApp(db_path=sample_db, embedder_factory=lambda _p: FakeEmbedder())
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.model_status.startswith("served-7b@127.0.0.1"))
            generator = app.models.loaded_generator
            assert generator is not None and generator.concurrency == 4
            assert "server" in app.gpu_status
            app.action_switch_model()
            await wait_until(pilot, lambda: isinstance(app.screen, ModelDialog))
            await wait_until(pilot, lambda: f"served-7b at {fake.url}" in screen_text(app))


def test_a_progress_message_with_an_item_is_never_skipped():
    """Textual asks the message it is about to handle whether the next queued one may
    stand in for it; an item's result must always be handled."""
    from dpl_engine import ProgressEvent
    from dpl_tui.messages import StepProgressed

    plain = StepProgressed(1, ProgressEvent("embed", 1, 8))
    carrying = StepProgressed(1, ProgressEvent("compare", 1, 8, value=object()))
    assert plain.can_replace(carrying) and plain.can_replace(StepProgressed(1, plain.event))
    assert not carrying.can_replace(plain)
    assert not plain.can_replace(StepProgressed(2, plain.event))  # another run's
