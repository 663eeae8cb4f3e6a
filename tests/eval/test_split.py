"""The evaluation split: expected targets and profiles on a hand-built store; the dev data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dpl_engine import EngineError
from dpl_engine.evaluation import split as sp
from user_store import Review, UserStore
from user_store.eval_store import EvalStore

LONG = "a long enough review text number {}"


def r(user: str, item: str, ts: int, text: str | None = None) -> Review:
    return Review(
        user_id=user,
        item_id=item,
        rating=4.0,
        title=f"{user} on {item}",
        text=text if text is not None else LONG.format(f"{user}-{item}"),
        timestamp=ts,
    )


# Thresholds for the hand-built store: text >= 20 chars, 3..5 reviews per user, >= 2 reviewers.
PARAMS = sp.SplitParams(min_chars=20, min_user_reviews=3, max_user_reviews=5, min_item_reviewers=2)

HAND_BUILT = [
    # A and B survive with i1, i2, i3.
    r("A", "i7", 0),
    r("A", "i1", 1),
    r("A", "i2", 2),
    r("A", "i3", 4),
    r("A", "i4", 5),
    r("B", "i7", 0, text="the very same words twice over"),  # older copy of B's i3 text
    r("B", "i1", 1),
    r("B", "i2", 3),
    r("B", "i3", 3, text="the very same words twice over"),  # same time as i2: item id breaks it
    r("B", "i5", 6, text="too short"),  # under 20 characters
    # C is removed only after D goes (D has 2 reviews, so i6 falls under 2 reviewers,
    # so C falls to 2 reviews, so i4 falls to A alone).
    r("C", "i2", 1),
    r("C", "i4", 2),
    r("C", "i6", 3),
    r("D", "i6", 1),
    r("D", "i1", 2),
    # F has more than 5 reviews.
    *[r("F", item, n) for n, item in enumerate(["i1", "i2", "i3", "i8", "i9", "i10"])],
]


@pytest.fixture
def store(tmp_path: Path):
    s = UserStore(tmp_path / "hand.db")
    s.upsert_reviews(HAND_BUILT)
    yield s
    s.close()


def test_hand_built_store_gives_the_expected_targets_and_profiles(store: UserStore):
    split = sp.prepare(store, PARAMS)
    assert [u.user_id for u in split.users] == ["A", "B"]
    a, b = split.users
    # i7 goes: B's copy is a duplicate text (the later copy is kept), leaving A alone on it.
    assert (a.profile, a.val, a.test) == (("i1",), "i2", "i3")
    assert (b.profile, b.val, b.test) == (("i1",), "i2", "i3")
    assert (split.items, split.reviews) == (3, 6)
    assert split.iterations >= 4  # D, then i6, then C, then i4 (and a final unchanged pass)
    # The method sees profiles (and, when testing, the validation reviews) and nothing else.
    assert split.visible_reviews("test") == {("A", "i1"), ("A", "i2"), ("B", "i1"), ("B", "i2")}
    assert split.visible_reviews("val") == {("A", "i1"), ("B", "i1")}
    hidden = split.hidden_reviews("test")
    assert {("A", "i3"), ("B", "i3")} <= hidden
    assert hidden | split.visible_reviews("test") == {(x.user_id, x.item_id) for x in HAND_BUILT}
    assert not hidden & split.visible_reviews("test")
    assert {("A", "i2"), ("B", "i2")} <= split.hidden_reviews("val")


def test_the_split_is_stored_with_its_parameters_and_reused(store: UserStore):
    first = sp.prepare(store, PARAMS)
    again = sp.prepare(store, PARAMS)
    assert first.split_id is not None and again.split_id == first.split_id
    assert again.users == first.users
    stored = EvalStore(store).split(first.split_id)
    assert stored.params == {
        "min_chars": 20,
        "min_user_reviews": 3,
        "max_user_reviews": 5,
        "min_item_reviewers": 2,
    }
    assert sp.load(store).users == first.users  # the latest split, read back from the tables
    looser = sp.prepare(store, sp.SplitParams(20, 3, 6, 2))
    assert looser.split_id != first.split_id
    assert "F" in {u.user_id for u in looser.users}
    # New data: a new fingerprint, so a new split.
    store.upsert_reviews([r("E", "i1", 1), r("E", "i2", 2), r("E", "i3", 3)])
    grown = sp.prepare(store, PARAMS)
    assert grown.split_id not in (first.split_id, looser.split_id)
    assert [u.user_id for u in grown.users] == ["A", "B", "E"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (sp.SplitParams(min_user_reviews=2), "at least 3"),
        (sp.SplitParams(min_user_reviews=20, max_user_reviews=10), "below"),
        (sp.SplitParams(min_item_reviewers=0), "at least 1"),
        (sp.SplitParams(min_chars=-1), "0 or more"),
    ],
)
def test_bad_thresholds_are_refused_with_the_option_named(params, message):
    with pytest.raises(EngineError, match=message):
        params.check()


def check_fixed_point(split: sp.Split, rows) -> None:
    """Every kept user and item meets the thresholds counted over the kept reviews only."""
    p = split.params
    kept = [(u.user_id, i) for u in split.users for i in (*u.profile, u.val, u.test)]
    per_user = Counter(u for u, _ in kept)
    per_item = Counter(i for _, i in kept)
    assert all(p.min_user_reviews <= n <= p.max_user_reviews for n in per_user.values())
    assert all(n >= p.min_item_reviewers for n in per_item.values())
    text = {(x.user_id, x.item_id): x for x in rows}
    assert all(len(text[k].text.strip()) >= p.min_chars for k in kept)
    for u in split.users:  # targets are the two latest reviews, in time order
        stamps = [text[(u.user_id, i)].timestamp for i in (*u.profile, u.val, u.test)]
        assert stamps == sorted(stamps)


def test_on_the_dev_data_the_paper_defaults_leave_nobody_and_suggestions_keep_users(
    mi5_db: Path, tmp_path: Path
):
    from benchmarks.common import copy_db

    with UserStore(copy_db(mi5_db, tmp_path / "mi5.db")) as store:
        rows = EvalStore(store).review_rows()
        assert len(rows) == 10_261
        assert sp.prepare(store, sp.PAPER_DEFAULTS).users == ()  # as PROVENANCE.md reports
        found = sp.suggest(rows, sp.PAPER_DEFAULTS, min_users=20)
        assert found, "some relaxed thresholds must keep 20 users"
        ranks = [sp.strictness(s.params) for s in found]
        assert ranks == sorted(ranks, reverse=True)
        for s in found:
            assert s.params.min_chars == 200  # review length is relaxed only as a last resort
            split = sp.prepare(store, s.params)
            assert len(split.users) == s.users >= 20
            check_fixed_point(split, rows)
            # One notch stricter on either count leaves fewer than 20 users (or is off-grid).
            users, items = s.params.min_user_reviews, s.params.min_item_reviewers
            for stricter in (
                sp.SplitParams(200, users + 1, 500, items),
                sp.SplitParams(200, users, 500, items + 1),
            ):
                if sp.strictness(stricter) > ranks[0]:
                    assert len(sp.compute(rows, stricter).users) < 20
