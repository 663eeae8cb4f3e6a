"""The differences screen shows each part the moment it is known: the measured account
before any model call, each item's entries judged as they arrive, the profile as it is
written, and what a cancel leaves (real engine and store, a scripted model whose calls
wait at gates the test opens)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dpl_engine.method import describe
from dpl_engine.method.measures import measured_differences
from dpl_tui.messages import StepProgressed
from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.widgets.step_progress import StepProgress
from dpl_tui.widgets.step_times import StepTimes
from dpl_tui.widgets.text_view import TextView
from models import ChatMessage, GenerationCancelled, GenerationStats, SamplingParams
from tests.engine.fakes import FakeGenerator
from tests.tui.conftest import screen_text, wait_until
from tests.tui.test_user import open_user

DEADLINE_S = 30.0
"""How long a gated call waits at most, so a failing test cannot hang the suite."""
ECHO = {
    "writing": "Plainer words, shorter sentences.",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "Fewer details about the product.",
}
PROFILE = "Writes short, upbeat reviews about gear."
HELD_AFTER = 3
"""Profile deltas the model writes before it waits at ``profile_gate``."""


class GatedModel(FakeGenerator):
    """One call at a time, as a llama.cpp model is. Each differences call waits until the
    test lets one through (``allow``), listening to the engine's stop meanwhile; the profile
    writes HELD_AFTER deltas, then waits at ``profile_gate``. ``script`` gives the
    differences of each call in turn (the last repeats)."""

    def __init__(self, script: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(on_token=self._profile_token)
        self.script = list(script)
        self.permits = threading.Semaphore(0)
        self.profile_gate = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0
        """Differences calls at the gate now."""
        self.returned = 0
        """Differences calls that gave their answer."""
        self.profile_held = False
        self._deltas = 0

    def allow(self, calls: int = 1) -> None:
        for _ in range(calls):
            self.permits.release()

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
            self.waiting += 1
        try:
            end = time.monotonic() + DEADLINE_S
            while not self.permits.acquire(timeout=0.02):
                if stop is not None and stop():
                    raise GenerationCancelled("gated: stopped")
                if time.monotonic() > end:
                    raise GenerationCancelled("gated: the test never opened the gate")
        finally:
            with self.lock:
                self.waiting -= 1
        if self.script:
            self.differences = self.script[min(self.calls["differences"], len(self.script) - 1)]
        value = super().complete_json(messages, schema, params, retries=retries, stop=stop)
        with self.lock:
            self.returned += 1
        return value

    def _profile_token(self) -> None:
        self._deltas += 1
        if self._deltas == HELD_AFTER + 1:  # HELD_AFTER deltas are out; the next one waits
            self.profile_held = True
            self.profile_gate.wait(DEADLINE_S)
            self.profile_held = False


async def open_differences(app: Any, pilot: Any) -> DifferencesScreen:
    await open_user(app, pilot)
    await pilot.press("d")
    await wait_until(pilot, lambda: isinstance(app.screen, DifferencesScreen))
    return app.screen


def comparison_sets(seen: list) -> list:
    """The comparison sets the screen was sent, in order (the hook may see one twice)."""
    sets = {
        m.event.value.item.id: m.event.value
        for m in seen
        if isinstance(m, StepProgressed) and m.event.step == "compare" and m.event.value
    }
    return list(sets.values())


async def test_the_measured_account_shows_while_every_differences_call_is_blocked(
    sample_db, make_app
):
    model = GatedModel()
    seen: list = []
    app = make_app(sample_db, generator=model)
    async with app.run_test(size=(140, 50), message_hook=seen.append) as pilot:
        screen = await open_differences(app, pilot)
        await wait_until(pilot, lambda: model.waiting == 1 and screen.measured_shown)
        assert model.returned == 0, "no differences call has given its answer"
        sets = comparison_sets(seen)
        overall, accounts = describe.accounts([measured_differences(c) for c in sets])
        measured = screen.query_one("#measured-account", TextView)
        assert len(sets) > 1 and overall is not None and overall.text in measured.text
        assert all(a.text in measured.text for a in accounts)
        # Every item's row waits for the model; the step times name the measured step.
        assert len(screen.query(".diff-pending")) == 3 * len(sets)
        assert "measured" in screen.query_one(StepTimes).text
        shown = measured.text

        model.allow(len(sets))
        model.profile_gate.set()
        await wait_until(pilot, lambda: screen.view is not None)
        assert measured.text == shown  # the same account, kept to the end
        assert [a.text for a in screen.view.accounts] == [a.text for a in accounts]
        times = screen.query_one(StepTimes).text
        n = len(sets)
        for step in ("comparison users", "measured", f"differences {n}/{n}", "profile"):
            assert step in times
        assert "computed" in times and "so far" not in times


async def test_an_echo_is_dimmed_with_its_reason_while_later_items_wait(sample_db, make_app):
    model = GatedModel(script=[ECHO, FakeGenerator().differences])
    app = make_app(sample_db, generator=model)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = await open_differences(app, pilot)
        await wait_until(pilot, lambda: model.waiting == 1 and screen.measured_shown)
        items = len(screen.query(".diff-pending")) // 3
        model.allow(1)
        # The first answer is judged as it arrives; the second call waits at the gate.
        await wait_until(pilot, lambda: model.returned == 1 and model.waiting == 1)
        await wait_until(pilot, lambda: len(screen.query(".diff-flagged")) == 1)
        flagged = str(screen.query_one(".diff-flagged").render())
        assert "emotional style: sentiment and tone" in flagged
        assert "uninformative: echoes the dimension's name or description" in flagged
        assert len(screen.query(".diff-pending")) == 3 * (items - 1)
        assert screen.view is None and screen.running
        await wait_until(pilot, lambda: "1 of 3 entries so far uninformative" in screen_text(app))
        assert "dpl models add" in screen_text(app)  # the way to a better model, at once

        model.allow(1)
        await wait_until(pilot, lambda: "1 of 6 entries so far uninformative" in screen_text(app))
        model.allow(items)
        model.profile_gate.set()
        await wait_until(pilot, lambda: screen.view is not None)
        await wait_until(
            pilot, lambda: f"1 of {3 * items} entries uninformative" in screen_text(app)
        )


async def test_the_profile_grows_as_it_is_written_and_a_cancel_keeps_it_marked_partial(
    sample_db, make_app
):
    model = GatedModel()
    model.allow(100)  # every differences call goes through; the profile stops mid-way
    app = make_app(sample_db, generator=model)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = await open_differences(app, pilot)
        profile = screen.query_one("#profile", TextView)
        await wait_until(pilot, lambda: model.profile_held)
        written = " ".join(PROFILE.split()[:HELD_AFTER])
        await wait_until(pilot, lambda: profile.text.strip() == written)
        assert screen.running and screen.profile_state == "writing"
        assert "being written" in profile.border_title

        await pilot.press("escape")
        await wait_until(pilot, lambda: "Cancelling" in screen.query_one(StepProgress).label_text)
        model.profile_gate.set()  # the delta in flight returns; the engine sees the cancel
        await wait_until(pilot, lambda: not screen.running)
        assert app.screen is screen and screen.view is None
        assert screen.profile_state == "partial"
        assert profile.text.startswith(written) and "partial" in profile.text
        assert PROFILE.split()[HELD_AFTER] not in profile.text  # nothing after the cancel
        assert "partial" in profile.border_title and "not saved" in profile.border_title
        assert model.streams[-1].closed_early
        cached = app.store.stats().cached
        assert cached.get("profile", 0) == 0 and cached.get("differences", 0) > 0
        assert app.session.profile is None
        # What was known before stays: the measured account and every item's row.
        assert screen.measured_shown and "Computing" not in screen_text(app)
        assert not screen.query(".diff-pending") and screen.query(".diff-cell")
        assert "profile" in screen.query_one(StepTimes).text
        assert "cancelled after" in screen.query_one(StepTimes).text
