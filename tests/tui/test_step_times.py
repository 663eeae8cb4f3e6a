"""The step-times line: each step's time from the end of the one before it, whether its
results came from the cache, and what a cancel leaves (events fed by hand, clock stopped)."""

from __future__ import annotations

import pytest

from dpl_engine import ProgressEvent, TokenEvent
from dpl_tui.widgets import step_times
from dpl_tui.widgets.step_times import StepClock, line


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time now, set by the test."""
    t = [100.0]
    monkeypatch.setattr(step_times, "now", lambda: t[0])
    return t


def test_each_step_is_timed_from_the_end_of_the_one_before(clock):
    steps = StepClock()
    clock[0] = 100.2
    steps.saw(ProgressEvent("retrieve", 1, 1))
    steps.saw(ProgressEvent("compare", 0, 2))
    clock[0] = 101.0
    steps.saw(ProgressEvent("embed", 1, 2, cached=True))  # part of choosing comparison users
    steps.saw(ProgressEvent("compare", 1, 2, cached=True))
    clock[0] = 103.0
    steps.saw(ProgressEvent("embed", 2, 2))
    steps.saw(ProgressEvent("compare", 2, 2))
    steps.saw(ProgressEvent("measure", 2, 2, value=[]))
    steps.saw(ProgressEvent("differences", 0, 2))
    clock[0] = 163.0
    steps.saw(ProgressEvent("differences", 1, 2, cached=True))
    clock[0] = 200.0
    steps.saw(ProgressEvent("differences", 2, 2))
    steps.saw(ProgressEvent("profile", 0, 1))
    clock[0] = 212.0
    times = steps.saw(ProgressEvent("profile", 0, 1, value=TokenEvent("Writes ")))
    assert times[-1].ended is None  # a delta changes nothing
    assert line(times).plain == (
        "retrieval 0.2 s, no model · comparison users 2/2 2.8 s, 1 cached, 1 computed · "
        "measured 0.0 s, no model · differences 2/2 1 min 37 s, 1 cached, 1 computed · "
        "profile 12.0 s so far…"
    )
    assert line(times, stopped="cancelled").plain.endswith("profile cancelled after 12.0 s")
    clock[0] = 215.0
    times = steps.saw(ProgressEvent("profile", 1, 1, cached=False))
    assert line(times).plain.endswith("profile 15.0 s, computed")


def test_a_run_read_from_the_cache_says_so(clock):
    steps = StepClock()
    steps.saw(ProgressEvent("retrieve", 1, 1))
    steps.saw(ProgressEvent("compare", 0, 1))
    steps.saw(ProgressEvent("compare", 1, 1, cached=True))
    steps.saw(ProgressEvent("differences", 0, 0))  # no item: done at once
    times = steps.saw(ProgressEvent("profile", 1, 1, cached=True))
    assert line(times).plain == (
        "retrieval 0.0 s, no model · comparison users 0.0 s, cached · differences 0.0 s · "
        "profile 0.0 s, cached"
    )
