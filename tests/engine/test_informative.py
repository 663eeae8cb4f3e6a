"""The informativeness check: the issue's examples by hand, then a fixed set of real answers
of the bundled model (tests/data/bundled_differences.json, with the prompts they came from),
each judged informative or not by a reader who did not use the checker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpl_engine.method import informative
from dpl_engine.method.cache import comparison_from_json, differences_from_json
from dpl_engine.types import ComparisonSet, ComparisonUser, Differences
from user_store import Item

from .fakes import review

DATA = Path(__file__).resolve().parents[1] / "data" / "bundled_differences.json"


def comparison(item_id: str = "B004Z8VQ2O", title: str = "Apogee JAM", rating: float = 5):
    mine = review("u", item_id, "Works with my iPad, clean sound.", rating=rating)
    other = review("o", item_id, "Great little interface for the price.", rating=4)
    return ComparisonSet(
        Item(item_id, title), mine, (ComparisonUser("o", 0, 0.1, 0.5, 4.0, other),), 4
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Rating: 5 out of 5", "echoes the rating"),
        ("Product Review", "echoes the prompt's labels and instructions"),
        ("emotional style: sentiment and tone", "echoes the dimension's name or description"),
        (
            "Writing style: word choice and sentence structure",
            "echoes the dimension's name or description",
        ),
        ("B004Z8VQ2O (Apogee JAM)", "echoes the item id"),
        ("Apogee JAM", "echoes the item title"),
        ("worryful", "says nothing comparative"),
        (
            "The person's review is made of individual paragraphs. Each paragraph has a single "
            "nested JSON object.",
            "says nothing comparative",
        ),
        ("", "empty"),
        ("More than the others.", "names no quality"),
    ],
)
def test_the_issues_examples_are_flagged_with_their_reason(text, reason):
    assert informative.judge_text(text, comparison()) == reason


@pytest.mark.parametrize(
    "text",
    [
        "Uses plainer words and much shorter sentences than the other reviewers.",
        "Calmer than the others, who gush about the sound.",
        "Unlike the others, mentions the iPad and the latency.",
        "Fewer details about the product; the others list every input.",
        "More negative in tone: complains about the price while others praise it.",
    ],
)
def test_real_contrasts_are_kept(text):
    assert informative.judge_text(text, comparison()) == ""


def test_a_dimension_that_repeats_an_earlier_one_is_flagged():
    same = "Writes shorter sentences than the others."
    d = Differences("B004Z8VQ2O", same, same, "Less positive than the others about the knobs.")
    verdicts = informative.check(d, comparison())
    assert [v.informative for v in verdicts] == [True, False, True]
    assert verdicts[1].reason == "repeats the writing style entry"


def test_free_text_is_judged_as_one_entry_and_the_share_counts_entries():
    free = Differences("B004Z8VQ2O", "", "", "", structured=False, raw="Rating: 5 out of 5")
    good = Differences(
        "B004Z8VQ2O",
        "Shorter than the others.",
        "Calmer than others.",
        "Fewer details than the rest.",
    )
    assert informative.check(free, comparison()) == [
        informative.Verdict("raw", False, "echoes the rating")
    ]
    cs = [comparison()]
    share = informative.share([free], cs)
    assert (share.flagged, share.total, share.fraction) == (1, 1, 1.0)
    assert informative.share([good], cs).fraction == 0.0
    assert informative.share([], cs).fraction is None


def test_informative_only_blanks_flagged_dimensions_and_drops_empty_items():
    mixed = Differences(
        "B004Z8VQ2O", "Shorter sentences than the others.", "Product Review", "worryful"
    )
    echo = Differences("B004Z8VQ2O", "Rating: 5 out of 5", "Product Review", "Apogee JAM")
    kept = informative.informative_only([mixed, echo], [comparison()])
    assert kept[0] is not None and kept[0].writing == mixed.writing
    assert (kept[0].emotional, kept[0].semantic) == ("", "")
    assert kept[1] is None


def load_records() -> list[dict]:
    return json.loads(DATA.read_text(encoding="utf-8"))["records"]


def test_the_saved_answers_come_with_their_prompts():
    data = json.loads(DATA.read_text(encoding="utf-8"))
    assert data["model_id"].startswith("SmolLM2-135M")
    for r in data["records"]:
        d = differences_from_json(r["differences"])
        user = r["messages"][1]["content"]
        assert r["item"]["title"] in user and "The person's review" in user
        assert d.raw and r["judged"].keys() == {"writing", "emotional", "semantic"}


def entries() -> list[tuple[dict, str]]:
    return [(r, dim) for r in load_records() for dim in r["judged"]]


@pytest.mark.parametrize(
    ("record", "dimension"),
    entries(),
    ids=lambda x: x if isinstance(x, str) else f"{x['user_id']}-{x['item']['id']}",
)
def test_the_checker_keeps_what_a_reader_judged_informative(record, dimension):
    """Each entry was judged by reading it against the reviews, without the checker (the
    reader's reason is beside it); the checker must reach the same verdict."""
    c = comparison_from_json(record["comparison"])
    d = differences_from_json(record["differences"])
    verdict = {v.dimension: v for v in informative.check(d, c)}[dimension]
    judged = record["judged"][dimension]
    assert verdict.informative == judged["informative"], (verdict.reason, judged["why"])


def test_the_reader_judged_both_kinds():
    """So the test above can fail both ways: 1 of the 30 entries was judged informative."""
    verdicts = [j["informative"] for r in load_records() for j in r["judged"].values()]
    assert len(verdicts) == 30 and verdicts.count(True) == 1
