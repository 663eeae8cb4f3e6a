"""What the engine announces while it works, so a front end can show it at once: the
measured differences before any LLM call, and the profile delta by delta (scripted LLM)."""

from __future__ import annotations

import pytest

from dpl_engine import Cancelled, CancelToken, ProgressEvent, TokenEvent

from .fakes import FakeGenerator
from .test_pipeline_units import engine


def test_the_measured_differences_come_before_the_first_llm_call():
    gen = FakeGenerator()
    e = engine(generator=gen)
    target = e.held_out_target("u1")
    seen: list[tuple[ProgressEvent, int]] = []
    for event in e.run(target, "dpl"):
        if isinstance(event, ProgressEvent):
            seen.append((event, gen.total_calls))
    steps = [ev.step for ev, _ in seen]
    measure, calls = next((ev, calls) for ev, calls in seen if ev.step == "measure")
    assert calls == 0
    assert steps.index("measure") > max(i for i, s in enumerate(steps) if s == "compare")
    assert steps.index("measure") < steps.index("differences")
    comparisons = e.comparisons(target)
    assert measure.value == e.measured(comparisons)
    assert measure.i == measure.n == len(comparisons) >= 2


def test_the_profile_arrives_delta_by_delta_and_the_whole_is_stored():
    e = engine()
    target = e.held_out_target("u1")
    events: list[ProgressEvent] = []
    profile = e.profile(target, "dpl", progress=events.append)
    deltas = [ev.value.text for ev in events if isinstance(ev.value, TokenEvent)]
    assert len(deltas) > 2 and "".join(deltas).strip() == profile.text
    assert all(ev.step == "profile" for ev in events if isinstance(ev.value, TokenEvent))
    assert [k for k in e.store.artifacts if k[0] == "profile"]
    # Read again, it comes from the cache in one piece: no deltas.
    again: list[ProgressEvent] = []
    assert e.profile(target, "dpl", progress=again.append) == profile
    assert not [ev for ev in again if isinstance(ev.value, TokenEvent)]


def test_a_profile_cancelled_mid_stream_is_never_stored():
    token = CancelToken()
    gen = FakeGenerator()
    e = engine(generator=gen)
    deltas: list[str] = []

    def progress(event: ProgressEvent) -> None:
        if isinstance(event.value, TokenEvent):
            deltas.append(event.value.text)
            if len(deltas) == 2:
                token.cancel()

    with pytest.raises(Cancelled):
        e.profile(e.held_out_target("u1"), "dpl", progress=progress, cancel=token)
    assert len(deltas) == 2 and gen.streams[-1].closed_early
    assert [k for k in e.store.artifacts if k[0] == "differences"]  # finished, kept
    assert not [k for k in e.store.artifacts if k[0] == "profile"]
