"""A target's differences calls run side by side up to the backend's concurrency, give the
same results as one by one for the same seeds, and stop together on a cancel or a failure."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from dpl_engine import CancelToken, ProgressEvent
from dpl_engine.types import Cancelled
from models import ChatMessage, GenerationCancelled, GenerationStats, ModelError, SamplingParams

from .fakes import FakeGenerator, prompt_text
from .test_pipeline_units import ITEMS, engine, world

DEADLINE_S = 10.0
"""Longest any scripted call waits for the state it needs; reached only when a test fails."""


def wait_until(predicate: Callable[[], bool], deadline_s: float = DEADLINE_S) -> bool:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


class ScriptedBackend(FakeGenerator):
    """Answers depend only on the prompt and the seed, as a deterministic server's do.

    A call whose prompt names ``late`` waits until ``until()`` holds (another answer has
    reached the caller), so answers come back out of input order."""

    def __init__(self, concurrency: int, *, hold: Callable[[int, Callable[[], bool]], None]
                 | None = None, late: str | None = None,
                 until: Callable[[], bool] = lambda: True) -> None:
        super().__init__(model_id="scripted-server")
        self.concurrency = concurrency
        self.hold = hold
        self.late = late
        self.until = until
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.arrived = 0
        self.finished = 0
        self.order: list[str] = []

    def complete_json(self, messages: Sequence[ChatMessage], schema: dict[str, Any],
                      params: SamplingParams, *, retries: int = 1,
                      stop: Callable[[], bool] | None = None
                      ) -> tuple[dict[str, Any], GenerationStats]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.arrived += 1
            n = self.arrived
        try:
            if self.hold is not None:
                self.hold(n, stop or (lambda: False))
            text = prompt_text(messages)
            if self.late is not None and self.late in text:
                wait_until(self.until)
            h = hashlib.sha256(f"{params.seed}|{params.temperature}|{text}".encode()).hexdigest()
            value = {"writing": f"w-{h[:8]}", "emotional": f"e-{h[8:16]}",
                     "semantic": f"s-{h[16:24]}"}
            with self._lock:
                self.order.append(h[:8])
            return value, GenerationStats(len(text.split()), 12, 0.0, 0.0, 0.0, "stop")
        finally:
            with self._lock:
                self.in_flight -= 1
                self.finished += 1


def differences_with(backend: ScriptedBackend, seed: int = 7,
                     events: list[ProgressEvent] | None = None):
    e = engine(generator=backend, seed=seed)
    target = e.held_out_target("u1")
    events = [] if events is None else events
    found = e.differences(target, progress=events.append)
    return found, [ev for ev in events if ev.step == "differences"]


def test_concurrent_differences_equal_sequential_ones_for_the_same_seed() -> None:
    one, _ = differences_with(ScriptedBackend(1))
    first_title = next(i.title for i in ITEMS if i.id == one[0].item_id)
    seen: list[ProgressEvent] = []
    parallel = ScriptedBackend(
        4,
        late=first_title,
        until=lambda: any(ev.step == "differences" and ev.value is not None for ev in seen),
    )
    many, events = differences_with(parallel, events=seen)
    assert len(one) >= 3
    assert many == one  # same values, in input order
    assert 1 < parallel.most_in_flight <= 4
    # They arrived out of input order, and each arrival carried its item's value.
    arrived = [ev.value for ev in events if ev.value is not None]
    assert sorted(arrived, key=one.index) == one and arrived != one
    assert [ev.i for ev in events] == list(range(len(one) + 1))
    other_seed, _ = differences_with(ScriptedBackend(4), seed=8)
    assert other_seed != one


def test_concurrency_never_exceeds_the_backend_limit() -> None:
    total = len(differences_with(ScriptedBackend(1))[0])

    def hold(n: int, stop: Callable[[], bool]) -> None:
        # Each call waits for a partner (the last one for nobody), so pairs overlap.
        wait_until(lambda: backend.in_flight >= 2 or backend.arrived == total)

    backend = ScriptedBackend(2, hold=hold)
    assert len(differences_with(backend)[0]) == total
    assert backend.most_in_flight == 2


def test_a_cancel_reaches_every_call_in_flight_and_stores_nothing() -> None:
    saw_stop: list[int] = []

    def hold(n: int, stop: Callable[[], bool]) -> None:
        if wait_until(stop):
            saw_stop.append(n)
            raise GenerationCancelled("scripted: stopped")

    backend = ScriptedBackend(3, hold=hold)
    store = world()
    e = engine(store=store, generator=backend)
    target = e.held_out_target("u1")
    token = CancelToken()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            e.differences(target, cancel=token)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    assert wait_until(lambda: backend.in_flight == 3)
    token.cancel()
    worker.join(timeout=DEADLINE_S)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert {1, 2, 3} <= set(saw_stop)  # a call started after the cancel stops at once too
    assert not [k for k in store.artifacts if k[0] == "differences"]


def test_a_failing_call_stops_the_others_and_its_error_is_raised() -> None:
    stopped: list[int] = []

    def hold(n: int, stop: Callable[[], bool]) -> None:
        if n == 2:
            wait_until(lambda: backend.in_flight == 2)
            raise ModelError("scripted: the server went away")
        if wait_until(stop):
            stopped.append(n)
            raise GenerationCancelled("scripted: stopped")

    backend = ScriptedBackend(2, hold=hold)
    e = engine(generator=backend)
    with pytest.raises(ModelError, match="went away"):
        e.differences(e.held_out_target("u1"))
    # Every other call that had started saw the stop; none is left running.
    assert 1 in stopped and sorted(stopped) == [n for n in range(1, backend.arrived + 1) if n != 2]
    assert backend.in_flight == 0
