"""Which items a target compares on: among the user's past items with at least m other
reviewers, the BM25 top k for the target, chosen apart from the k retrieved past reviews.
A real SQLite store, built by hand so the BM25 order is plain to see."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpl_engine import Engine, EngineConfig
from user_store import Item, Review, UserStore

from .fakes import FakeEmbedder, FakeGenerator

# Every description has four words; the earlier an item, the more of the query's words it
# holds, so BM25 ranks them a > b > c > d > e over the whole history or any part of it.
ITEMS = [
    Item("a", "a", "bronze acoustic phosphor warm"),
    Item("b", "b", "bronze acoustic phosphor plain"),
    Item("c", "c", "bronze acoustic plain plain"),
    Item("d", "d", "bronze plain plain plain"),
    Item("e", "e", "plain plain plain plain"),
    Item("t", "t", "bronze acoustic phosphor strings"),
]
OTHER_REVIEWERS = {"a": 1, "b": 4, "c": 2, "d": 5, "e": 6}


def _review(user: str, item: str, ts: int, title: str = "ok") -> Review:
    return Review(user, item, 4.0, title, f"{user} wrote this about {item} at length.", ts)


@pytest.fixture
def store(tmp_path: Path):
    s = UserStore(tmp_path / "hand.db")
    s.upsert_items(ITEMS)
    mine = [_review("me", item, ts) for ts, item in enumerate("abcde", start=1)]
    mine.append(_review("me", "t", 10, title="warm"))
    others = [
        _review(f"o{j}", item, 20 + j)
        for item, count in OTHER_REVIEWERS.items()
        for j in range(count)
    ]
    s.upsert_reviews(mine + others)
    yield s
    s.close()


def _engine(store: UserStore, **config) -> Engine:
    return Engine(store, FakeGenerator(), FakeEmbedder(), EngineConfig(**config))


def _items(found) -> list[str]:
    return [r.entry.item.id for r in found]


@pytest.mark.parametrize(
    ("k", "m", "expected", "eligible"),
    [
        (8, 4, ["b", "d", "e"], 3),  # a has one other reviewer, c two
        (2, 2, ["b", "c"], 4),
        (8, 5, ["d", "e"], 2),
        (3, 1, ["a", "b", "c"], 5),  # every item qualifies: the same as retrieval
        (8, 7, [], 0),
    ],
)
def test_comparison_items_for_several_k_and_m(store, k, m, expected, eligible):
    engine = _engine(store, k=k, m=m)
    target = engine.held_out_target("me")
    assert target.item.id == "t"
    chosen, n_eligible = engine.comparison_items(target)
    assert (_items(chosen), n_eligible) == (expected, eligible)
    assert [r.rank for r in chosen] == list(range(1, len(expected) + 1))


def test_comparison_items_are_chosen_apart_from_the_retrieved_reviews(store):
    engine = _engine(store, k=2, m=4)
    target = engine.held_out_target("me")
    assert _items(engine.retrieve(target)) == ["a", "b"]
    assert _items(engine.comparison_items(target)[0]) == ["b", "d"]
    comparisons = engine.comparisons(target)
    assert [c.item.id for c in comparisons] == ["b", "d"]
    assert [c.reviewers for c in comparisons] == [4, 5]


def test_fewer_eligible_items_than_k_is_said(store):
    engine = _engine(store, k=8, m=4)
    target = engine.held_out_target("me")
    events = []
    engine.comparisons(target, progress=events.append)
    first = next(e for e in events if e.step == "compare")
    assert first.n == 3 and "top 8 of 3 past items with >= 4 other reviewers" in first.detail
    result = engine.generate(target, "dpl")
    assert len(result.comparisons) == 3
    assert any("differences come from 3 items, not 8" in note for note in result.notes)


def test_hidden_reviews_do_not_count_as_other_reviewers(store):
    # Under an evaluation split the reviewers of an item are those whose visible profile
    # holds it: hiding one of b's four other reviews makes b fall under m = 4.
    engine = Engine(
        store,
        FakeGenerator(),
        FakeEmbedder(),
        EngineConfig(k=8, m=4),
        exclude_reviews=[("o0", "b")],
    )
    target = engine.held_out_target("me")
    assert _items(engine.comparison_items(target)[0]) == ["d", "e"]


def test_the_paper_preset_ranks_with_bm25okapi_on_whitespace_tokens(store):
    from rank_bm25 import BM25Okapi

    engine = _engine(store, k=8, m=1, preset="paper")
    target = engine.held_out_target("me")
    history = [e for e in store.user_history("me").entries if e.item.id != "t"]
    docs = [f"{e.review.title} {e.item.description}" for e in history]
    query = f"{target.title} {target.item.description}"
    expected = BM25Okapi([d.split() for d in docs]).get_top_n(query.split(), docs, n=8)
    found = engine.retrieve(target)
    assert [f"{r.entry.review.title} {r.entry.item.description}" for r in found] == expected


def test_a_second_target_reuses_the_differences_of_shared_comparison_items(store):
    store.upsert_items([Item("x", "x", "bronze acoustic phosphor wound")])
    generator = FakeGenerator()
    engine = Engine(store, generator, FakeEmbedder(), EngineConfig(k=8, m=4))
    first = engine.generate(engine.held_out_target("me"), "dpl")
    assert generator.calls["differences"] == 3
    other = engine.target("me", "x", rating=3, title="strings again")
    second = engine.generate(other, "dpl")
    assert [c.item.id for c in second.comparisons] == [c.item.id for c in first.comparisons]
    assert generator.calls["differences"] == 3  # all three served from the cache
    assert second.differences == first.differences
