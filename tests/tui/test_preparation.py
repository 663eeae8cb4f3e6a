"""Background preparation in the app: the open user's differences are computed before
they are asked for, the person's own requests go first, and quitting lets the call in
flight return but never hangs on it (scripted models on the bundled sample)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.screens.generate import GenerateScreen
from dpl_tui.screens.users import UsersScreen
from models import ChatMessage, GenerationCancelled, GenerationStats, SamplingParams
from tests.engine.fakes import FakeGenerator
from tests.tui.conftest import screen_text, wait_until
from tests.tui.test_user import USER, open_user

DEADLINE_S = 30.0
"""How long a gated call waits at most, so a failing test cannot hang the suite."""


class OneModel(FakeGenerator):
    """One call at a time, as a llama.cpp model is; the background's differences calls wait
    at ``gate`` (listening to ``stop`` unless ``deaf``). Records who called, in order."""

    def __init__(self, *, deaf: bool = False, stop_takes_s: float = 0.0) -> None:
        super().__init__()
        self.stop_takes_s = stop_takes_s
        self.model_lock = threading.Lock()
        self.gate = threading.Event()
        self.deaf = deaf
        self.log: list[tuple[str, str]] = []  # (thread name, event)
        self.waiting = 0

    def _event(self, what: str) -> None:
        self.log.append((threading.current_thread().name, what))

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        with self.model_lock:
            self._event("start")
            if threading.current_thread().name == "dpl-prepare":
                self.waiting += 1
                end = time.monotonic() + DEADLINE_S
                try:
                    while not self.gate.is_set() and time.monotonic() < end:
                        if not self.deaf and stop is not None and stop():
                            time.sleep(self.stop_takes_s)
                            self._event("stopped")
                            raise GenerationCancelled("gated: stopped")
                        time.sleep(0.01)
                finally:
                    self.waiting -= 1
            self._event("done")
            return super().complete_json(messages, schema, params, retries=retries, stop=stop)

    def background_calls(self, what: str) -> int:
        return sum(1 for name, e in self.log if name == "dpl-prepare" and e == what)


async def test_a_prepared_user_shows_its_differences_without_a_call(sample_db, make_app):
    generator = FakeGenerator()
    app = make_app(sample_db, generator=generator, prepare_ahead=True)
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await wait_until(pilot, lambda: app.preparer.is_prepared(USER))
        await wait_until(pilot, lambda: "items ready" in screen_text(app))
        assert "Preparing:" in screen_text(app)
        calls = generator.total_calls
        assert generator.calls["differences"] >= 2 and generator.calls["profile"] == 1
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None)
        assert screen.view.differences and generator.total_calls == calls


async def test_a_generation_asked_for_goes_first_and_preparation_resumes(sample_db, make_app):
    generator = OneModel()
    app = make_app(sample_db, generator=generator, prepare_ahead=True)
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await wait_until(pilot, lambda: generator.waiting == 1)  # preparing, at the gate
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, GenerateScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.result is not None and not screen.running)
        assert not screen.result.cancelled and screen.result.text
        # The background call stopped before the person's first call started.
        person = [i for i, (name, _) in enumerate(generator.log) if name != "dpl-prepare"]
        stopped = generator.log.index(("dpl-prepare", "stopped"))
        assert person and stopped < person[0]
        # Once the person's generation is over, preparation picks up again and finishes.
        await wait_until(pilot, lambda: generator.background_calls("start") >= 2)
        generator.gate.set()
        await wait_until(pilot, lambda: app.preparer.is_prepared(USER))


async def test_leaving_the_user_stops_preparation(sample_db, make_app):
    generator = OneModel()
    app = make_app(sample_db, generator=generator, prepare_ahead=True)
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await wait_until(pilot, lambda: generator.waiting == 1)
        assert "Preparing:" in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        await wait_until(pilot, lambda: generator.background_calls("stopped") == 1)
        await wait_until(pilot, lambda: app.preparer.running_for is None)
        await wait_until(pilot, lambda: "Preparing:" not in screen_text(app))
        assert not app.preparer.is_prepared(USER)


def preparing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dpl-prepare" and t.is_alive()]


async def test_quitting_waits_for_the_call_in_flight_to_return(sample_db, make_app):
    """A thread still inside llama.cpp when Python shuts down aborts the process: quitting
    lets the stopped call return first."""
    generator = OneModel(stop_takes_s=0.5)  # the token in flight takes a while to finish
    app = make_app(sample_db, generator=generator, prepare_ahead=True)
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await wait_until(pilot, lambda: generator.waiting == 1)
        assert preparing_threads()
        await pilot.press("ctrl+q")
    assert not preparing_threads()
    assert generator.background_calls("stopped") == 1
    assert generator.background_calls("done") == 0


async def test_quitting_does_not_hang_on_a_call_that_ignores_the_stop(sample_db, make_app):
    generator = OneModel(deaf=True)  # a call that cannot be interrupted
    app = make_app(sample_db, generator=generator, prepare_ahead=True)
    app.preparer.close_wait_s = 0.2
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await wait_until(pilot, lambda: generator.waiting == 1)
        await pilot.press("ctrl+q")
    # The app has exited while the background call is still inside the model.
    assert generator.waiting == 1 and not generator.gate.is_set()
    assert generator.background_calls("done") == 0 and preparing_threads()
    generator.gate.set()


async def test_what_dpl_prepare_computed_is_what_the_app_reads(sample_db, make_app, monkeypatch):
    from typer.testing import CliRunner

    import models.embeddings
    import models.llama
    from dpl_tui.cli import app as cli
    from tests.engine.fakes import FakeEmbedder

    monkeypatch.setattr(models.llama, "load_generator", lambda _p=None: FakeGenerator())
    monkeypatch.setattr(models.embeddings, "load_embedder", lambda _p=None: FakeEmbedder())
    out = CliRunner().invoke(cli, ["prepare", USER, "--db", str(sample_db)])
    assert out.exit_code == 0, out.output

    generator = FakeGenerator()
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(160, 42)) as pilot:
        await open_user(app, pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None)
        assert screen.view.differences and generator.total_calls == 0
