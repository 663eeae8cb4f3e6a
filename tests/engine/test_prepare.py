"""Preparing a target ahead of time: everything a dpl generation needs is cached, and with
``rest`` the user's other eligible items too, so a later target of the same user makes no
differences call. The hand-built store of test_comparison_items."""

from __future__ import annotations

import pytest

from dpl_engine import Cancelled, CancelToken, Engine, EngineConfig

from .fakes import FakeEmbedder, FakeGenerator
from .test_comparison_items import store  # noqa: F401 - the fixture


def _engine(store, generator: FakeGenerator) -> Engine:  # noqa: F811
    return Engine(store, generator, FakeEmbedder(), EngineConfig(k=2, m=2))


def test_a_prepared_target_generates_with_one_call(store):  # noqa: F811
    generator = FakeGenerator()
    engine = _engine(store, generator)
    target = engine.held_out_target("me")
    prepared = engine.prepare(target)
    assert (prepared.items, prepared.llm_calls) == (2, 3)  # b and c, then the profile
    assert generator.calls == {"differences": 2, "profile": 1}

    result = engine.generate(target, "dpl")
    assert result.llm_calls == 1 and generator.calls["generate"] == 1
    assert [c.item.id for c in result.comparisons] == ["b", "c"]
    assert engine.prepare(target).llm_calls == 0  # all of it cached


def test_the_rest_of_the_items_serve_another_target(store):  # noqa: F811
    generator = FakeGenerator()
    engine = _engine(store, generator)
    events = []
    prepared = engine.prepare(engine.held_out_target("me"), rest=True, progress=events.append)
    assert prepared.items == 4  # b, c, d and e: every item with two other reviewers
    assert generator.calls["differences"] == 4
    arrived = [e.value.item_id for e in events if e.step == "differences" and e.value]
    assert arrived == ["b", "c", "d", "e"]  # the target's own items first, then by rank

    other = engine.target("me", "a", rating=4.0, title="plain")
    found = engine.differences(other)
    assert {d.item_id for d in found} <= {"b", "c", "d", "e"} and found
    assert generator.calls["differences"] == 4  # nothing new


def test_a_cancelled_preparation_keeps_what_finished(store):  # noqa: F811
    token = CancelToken()
    generator = FakeGenerator()
    engine = _engine(store, generator)

    def stop_after_first(event) -> None:
        if event.step == "differences" and event.value is not None:
            token.cancel()

    target = engine.held_out_target("me")
    with pytest.raises(Cancelled):
        engine.prepare(target, progress=stop_after_first, cancel=token)
    assert generator.calls["differences"] == 1
    assert engine.prepare(target).llm_calls == 2  # the second item and the profile
