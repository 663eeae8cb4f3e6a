"""``dpl split --paper``: the paper's eight-stage preparation on a hand-built store (each
stage has something to remove, worked out by hand below) and on the dev data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpl_engine import EngineError
from dpl_engine.evaluation import paper_split as ps
from dpl_engine.evaluation import split as sp
from user_store import Item, Review, UserStore
from user_store.eval_store import EvalStore

TEXT = "a review long enough to pass, by {} on {}"

# Small thresholds for a small store: text >= 20 chars; descriptions of 10-100 chars with a
# title, categories and a rating count; items >= 2 reviewers, users 4-10 reviews; the last 3
# reviews are inputs; profile items need 2 users, profiles 2 reviews.
PARAMS = ps.PaperSplitParams(
    min_chars=20,
    min_description_chars=10,
    max_description_chars=100,
    min_item_reviewers=2,
    min_user_reviews=4,
    max_user_reviews=10,
    inputs=3,
    min_profile_item_users=2,
    min_profile_reviews=2,
)
GOOD = ["i1", "i2", "i3", "i4", "i5", "i6", "iX"]
META = {
    **{
        i: {
            "description": [f"a fine description of {i}"],
            "categories": ["Music"],
            "rating_number": 12,
        }
        for i in GOOD
    },
    "ishort": {"description": ["tiny"], "categories": ["Music"], "rating_number": 3},
    "inofields": {"description": ["long enough description"], "categories": [], "rating_number": 3},
}


def r(user: str, item: str, ts: int, text: str | None = None) -> Review:
    return Review(user, item, 4.0, f"{user} {item}", text or TEXT.format(user, item), ts)


REVIEWS = [
    # U1: ishort goes at stage 2 (description under 10 chars).
    *[r("U1", i, ts) for ts, i in enumerate(["i1", "i2", "i3", "iX", "i4", "i5", "ishort"], 1)],
    # U2: its i6 review repeats its newer i5 text, so stage 3 keeps only i5.
    r("U2", "i1", 1),
    r("U2", "i2", 2),
    r("U2", "i3", 3),
    r("U2", "i6", 4, text="the very same words, written twice"),
    r("U2", "i4", 5),
    r("U2", "i5", 6, text="the very same words, written twice"),
    # U3: inofields goes at stage 2 (no categories); i6 then has U3 alone and goes at stage 4.
    *[r("U3", i, ts) for ts, i in enumerate(["iX", "i1", "i6", "i2", "i4", "i5", "inofields"])],
    # U4: its i1 review is too short (stage 1), which leaves 3 reviews (stage 4 removes U4).
    r("U4", "i1", 1, text="too short"),
    r("U4", "i2", 2),
    r("U4", "i3", 3),
    r("U4", "i4", 4),
]
# Stage 6 (last 3 reviews as inputs): U1 profile i1 i2 i3 | inputs iX i4 i5; U2 profile i1 i2
# | inputs i3 i4 i5; U3 profile iX i1 | inputs i2 i4 i5. Stage 7: i3 (U1 alone) and iX (U3
# alone) leave the profiles; U3 keeps only i1, under 2, and goes; i1 and i2 keep 2 users.


@pytest.fixture
def store(tmp_path: Path):
    s = UserStore(tmp_path / "paper.db")
    items = [
        Item(i, f"Title {i}", " ".join(m["description"]), tuple(m["categories"]))
        for i, m in META.items()
    ]
    s.upsert_items(items, raw={i: json.dumps({"parent_asin": i, **m}) for i, m in META.items()})
    s.upsert_reviews(REVIEWS)
    yield s
    s.close()


def test_each_stage_removes_what_it_should(store):
    evals = EvalStore(store)
    prepared = ps.prepare_rows(evals.review_rows(), evals.item_rows(), PARAMS)
    counts = [(s.number, s.reviews, s.users, s.items) for s in prepared.stages]
    assert counts == [
        (1, 23, 4, 9),  # U4's short i1 review
        (2, 21, 4, 7),  # ishort, inofields
        (3, 20, 4, 7),  # U2's older copy of a text (its i6)
        (4, 16, 3, 6),  # U4 (3 reviews), then i6 (U3 alone)
        (5, 16, 3, 6),
        (6, 16, 3, 6),
        (7, 10, 2, 6),  # i3 and iX leave the profiles, then U3
        (8, 10, 2, 6),
    ]
    assert [(u.user_id, u.profile, u.inputs) for u in prepared.users] == [
        ("U1", ("i1", "i2"), ("iX", "i4", "i5")),
        ("U2", ("i1", "i2"), ("i3", "i4", "i5")),
    ]


def test_targets_and_profiles_are_built_as_the_paper_builds_them(store):
    split = sp.prepare_paper(store, PARAMS)
    assert [(u.user_id, u.profile, u.val, u.test) for u in split.users] == [
        ("U1", ("i1", "i2", "iX"), "i4", "i5"),
        ("U2", ("i1", "i2", "i3"), "i4", "i5"),
    ]
    # What the method may see for the test targets: profiles plus validation reviews; U3 and
    # U4 are nobody's comparison reviewers, and no test target is anyone's profile.
    hidden = split.hidden_reviews("test")
    assert ("U1", "i5") in hidden and ("U2", "i5") in hidden
    assert ("U1", "i4") not in hidden and ("U2", "i3") not in hidden
    assert all((u, i) in hidden for u, i in [("U3", "i1"), ("U4", "i2"), ("U1", "i3")])
    assert ("U1", "i4") in split.hidden_reviews("val")

    # Stored, and the same preparation on the same data gives the same split back.
    again = sp.prepare_paper(store, PARAMS)
    assert again.split_id == split.split_id and again.users == split.users
    loaded = sp.load(store, split.split_id)
    assert loaded is not None and loaded.params == PARAMS and loaded.users == split.users
    # Changed item metadata is other data: a new split.
    store.upsert_items([Item("i3", "Title i3", "a description changed since")])
    assert sp.prepare_paper(store, PARAMS).split_id != split.split_id


def test_the_stage_that_empties_it_is_named_and_relaxed(store):
    evals = EvalStore(store)
    reviews, items = evals.review_rows(), evals.item_rows()
    # The paper's own thresholds: no review here has 200 characters.
    assert ps.prepare_rows(reviews, items, ps.PAPER).emptied_at.number == 1
    # With the paper's stage-7 values (5 users an item, 8 reviews a profile) stage 7 leaves
    # nobody; the mildest relaxation that keeps someone is 2 users an item and 2 reviews.
    strict = replace(PARAMS, min_profile_item_users=5, min_profile_reviews=8)
    assert ps.prepare_rows(reviews, items, strict).emptied_at.number == 7
    found = ps.suggest(reviews, items, strict)
    assert found is not None and found.stage.number == 7
    assert found.changes == {"min_profile_item_users": 2, "min_profile_reviews": 2}
    assert found.params == PARAMS and found.users == 2
    assert ps.suggest(reviews, items, PARAMS) is None  # nothing to relax


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": 1}, "--inputs 1"),
        ({"min_user_reviews": 3}, "--min-user-reviews 3"),
        ({"min_description_chars": 300}, "--min-description-chars 300"),
    ],
)
def test_bad_paper_thresholds_are_refused_with_the_option_named(change, message):
    with pytest.raises(EngineError, match=message):
        replace(PARAMS, **change).check()


def test_cli_prints_every_stage_and_suggests_for_the_dev_data(
    mi5_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from benchmarks.common import copy_db
    from dpl_tui.cli import app

    monkeypatch.setenv("COLUMNS", "200")  # the stage table on one line per stage
    db = copy_db(mi5_db, tmp_path / "mi5.db")
    runner = CliRunner()
    result = runner.invoke(app, ["split", "--paper", "--db", str(db)])
    assert result.exit_code == 1
    out = result.output
    # The dev data has no item metadata, so stage 2 leaves nobody; the advice gets past it.
    assert "Stage 2 (reviews of items with a fitting description) leaves no user" in out
    advice = out.split("dpl split --paper ", 1)[1].split("\n")[0].split()
    assert "--no-item-fields" in advice and "--min-description-chars" in advice
    rows = [line for line in out.splitlines() if "│" in line]
    for stage in ps.prepare_rows([], [], ps.PAPER).stages:
        assert any(stage.name in row and f" {stage.number} " in row for row in rows), stage
    assert "Traceback" not in out

    flags = advice
    relaxed = runner.invoke(app, ["split", "--paper", *flags, "--db", str(db), "--json"])
    assert relaxed.exit_code == 0, relaxed.output
    summary = json.loads(relaxed.output)
    assert summary["users"] >= 20 and summary["params"]["kind"] == "paper"
    assert [s["number"] for s in summary["stages"]] == list(range(1, 9))
    assert summary["stages"][-1]["users"] == summary["users"]

    wrong = runner.invoke(app, ["split", "--inputs", "5", "--db", str(db)])
    assert wrong.exit_code != 0 and "--inputs applies to the paper's preparation" in wrong.output
