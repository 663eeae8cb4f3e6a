"""Item descriptions are cut in prompts when asked (``max_description_chars``), the cap is
part of every cache key it changes, and the generation prompt's cost is told part by part.
A hand-built SQLite store whose items have long descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpl_engine import Engine, EngineConfig
from dpl_engine.method import generation
from tests.engine.fakes import FakeEmbedder, FakeGenerator, prompt_text
from user_store import Item, Review, UserStore

LONG = "warm bronze strings " * 100  # 2,000 characters


@pytest.fixture
def store(tmp_path: Path):
    s = UserStore(tmp_path / "long.db")
    s.upsert_items([Item(i, f"item {i}", f"{i} {LONG}") for i in "abct"])
    reviews = [
        Review("me", i, 4.0, "ok", f"My review of {i}, written at some length.", ts)
        for ts, i in enumerate("abct", start=1)
    ]
    reviews += [
        Review(f"o{j}", i, 3.0, "fine", f"Reviewer {j} on {i}: it does the job.", 10 + j)
        for i in "abc"
        for j in range(5)
    ]
    s.upsert_reviews(reviews)
    yield s
    s.close()


def _engine(store: UserStore, generator: FakeGenerator, cap: int | None) -> Engine:
    config = EngineConfig(k=3, m=4, max_description_chars=cap)
    return Engine(store, generator, FakeEmbedder(), config)


def test_descriptions_are_cut_in_every_prompt_when_asked(store):
    whole, cut = FakeGenerator(), FakeGenerator()
    for generator, cap in ((whole, None), (cut, 40)):
        engine = _engine(store, generator, cap)
        engine.generate(engine.held_out_target("me"), "dpl")
    assert {kind for kind, _ in cut.prompts} == {"differences", "profile", "generate"}
    for kind, messages in cut.prompts:
        text = prompt_text(messages)
        assert LONG not in text and "strings warm bronze …\n" in text, kind
    assert all(LONG.strip() in prompt_text(m) for _, m in whole.prompts)


def test_the_cap_is_part_of_the_cache_keys(store):
    first = FakeGenerator()
    engine = _engine(store, first, None)
    target = engine.held_out_target("me")
    engine.generate(target, "dpl")
    again = FakeGenerator()
    _engine(store, again, None).generate(target, "dpl")
    assert dict(again.calls) == {"generate": 1}  # differences and profile from the cache
    capped = FakeGenerator()
    _engine(store, capped, 40).generate(target, "dpl")
    assert capped.calls["differences"] == first.calls["differences"] >= 1
    assert capped.calls["profile"] == 1


def test_the_prompt_cost_adds_up_and_shrinks_with_the_cap(store):
    costs = {}
    for cap in (None, 40):
        engine = _engine(store, FakeGenerator(), cap)
        result = engine.generate(engine.held_out_target("me"), "dpl")
        cost = generation.prompt_cost(
            engine.generator,
            "dpl",
            result.target,
            result.retrieved,
            result.profile,
            max_tokens=384,
            max_review_chars=engine.config.max_review_chars,
            preset=engine.preset,
        )
        parts = cost["descriptions"] + cost["past_reviews"] + cost["profile"] + cost["rest"]
        assert parts == cost["total"] == engine.generator.count_tokens(list(result.messages))
        assert min(cost.values()) > 0
        costs[cap] = cost
    assert costs[40]["descriptions"] < costs[None]["descriptions"] / 10
    assert costs[40]["past_reviews"] == costs[None]["past_reviews"]


def test_an_evaluation_without_the_cap_keeps_its_earlier_run_key(mi5_db, tmp_path):
    from benchmarks.common import copy_db
    from dpl_engine.evaluation import runner as ev
    from dpl_engine.evaluation import split as sp

    store = UserStore(copy_db(mi5_db, tmp_path / "dev.db"))
    split = sp.prepare(
        store, sp.SplitParams(min_chars=200, min_user_reviews=6, min_item_reviewers=3)
    )
    configs = {}
    for cap in (None, 500):
        cfg = ev.EvalConfig(
            methods=("none",), seeds=(1,), engine=EngineConfig(max_description_chars=cap)
        )
        runner = ev.Evaluation(store, split, FakeGenerator(), FakeEmbedder(), cfg)
        configs[cap] = runner.run_config()["engine"]
    store.close()
    assert "max_description_chars" not in configs[None]
    assert configs[500]["max_description_chars"] == 500
