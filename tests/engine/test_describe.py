"""The measured differences in words: every threshold at its edge, then a real comparison set."""

from __future__ import annotations

import pytest

from dpl_engine.method import describe
from dpl_engine.method.describe import SAME_RATIO, STEPS, TWICE_RATIO, account, overall
from dpl_engine.types import MeasuredDifferences, TextMeasures

BASE = dict(
    rating=4.0,
    words=40.0,
    sentence_words=12.0,
    lexical_diversity=0.8,
    exclamations_per_100_words=0.0,
    first_person_per_100_words=3.0,
    sentiment=0.3,
    reading_ease=70.0,
    questions_per_100_words=0.0,
)


def md(item: str = "i", **user: float) -> MeasuredDifferences:
    """The user differs from the others (BASE) only in ``user``."""
    return MeasuredDifferences(item, TextMeasures(**{**BASE, **user}), TextMeasures(**BASE))


def contrast(m: MeasuredDifferences, name: str) -> describe.Contrast:
    return next(c for c in account(m).contrasts if c.measure == name)


def test_identical_reviews_are_about_the_same_on_every_measure():
    a = account(md())
    assert not a.different
    assert a.text == "About the same as the representative reviewers on every measure."
    assert {c.measure for c in a.contrasts} == set(describe.LABELS)


@pytest.mark.parametrize(
    ("ratio", "direction", "words"),
    [
        (SAME_RATIO, 0, ""),  # 25% more is still about the same
        (SAME_RATIO + 0.01, 1, "writes more than"),
        (TWICE_RATIO - 0.01, 1, "writes more than"),
        (TWICE_RATIO, 1, "writes about twice as much as"),
        (2.49, 1, "writes about twice as much as"),
        (3.0, 1, "writes about 3 times as much as"),
        (1 / SAME_RATIO, 0, ""),
        (1 / (SAME_RATIO + 0.01), -1, "writes less than"),
        (1 / TWICE_RATIO, -1, "writes about half as much as"),
        (1 / 3, -1, "writes about a third as much as"),
        (1 / 4, -1, "writes about a quarter as much as"),
    ],
)
def test_length_edges(ratio, direction, words):
    c = contrast(md(words=40.0 * ratio), "words")
    assert c.direction == direction
    assert c.phrase.startswith(words)
    if direction:
        assert "vs 40 words)" in c.phrase and "the representative reviewers" in c.phrase


def test_a_zero_length_compares_nothing():
    assert contrast(md(words=0.0), "words").direction == 0


@pytest.mark.parametrize(
    ("ratio", "direction", "kind"),
    [
        (SAME_RATIO, 0, ""),
        (SAME_RATIO + 0.01, 1, "in longer sentences"),
        (TWICE_RATIO, 1, "in much longer sentences"),
        (1 / SAME_RATIO, 0, ""),
        (1 / (SAME_RATIO + 0.01), -1, "in shorter sentences"),
        (1 / TWICE_RATIO, -1, "in much shorter sentences"),
    ],
)
def test_sentence_length_edges(ratio, direction, kind):
    c = contrast(md(sentence_words=12.0 * ratio), "sentence_words")
    assert (c.direction, c.phrase.startswith(kind)) == (direction, True)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_each_stepped_measure_at_its_edges(name):
    step = STEPS[name]
    base = BASE[name]
    below = contrast(md(**{name: base + step.same * 0.99}), name)
    at = contrast(md(**{name: base + step.same}), name)
    far = contrast(md(**{name: base + step.far}), name)
    down = contrast(md(**{name: base - step.same}), name)
    assert below.direction == 0 and below.phrase == ""
    assert at.direction == 1 and not at.large and at.phrase
    assert far.direction == 1 and far.large
    assert down.direction == -1 and not down.large


def test_the_wording_of_each_measure():
    assert contrast(md(rating=4.25), "rating").phrase == "rates 0.25 stars higher (4.25 vs 4.00)"
    assert contrast(md(rating=3.0), "rating").phrase == "rates 1 star lower (3.00 vs 4.00)"
    assert contrast(md(sentiment=0.15), "sentiment").phrase == (
        "slightly less positive (+0.15 vs +0.30)"
    )
    assert contrast(md(sentiment=0.9), "sentiment").phrase.startswith("much more positive")
    assert contrast(md(first_person_per_100_words=0.5), "first_person_per_100_words").phrase == (
        "less first person (0.5 vs 3.0 per 100 words)"
    )
    assert contrast(
        md(first_person_per_100_words=9.0), "first_person_per_100_words"
    ).phrase.startswith("far more first person")
    assert contrast(md(exclamations_per_100_words=3.0), "exclamations_per_100_words").phrase == (
        "far more exclamation marks (3.0 vs 0.0 per 100 words)"
    )
    assert contrast(md(questions_per_100_words=1.0), "questions_per_100_words").phrase == (
        "more questions (1.0 vs 0.0 per 100 words)"
    )
    assert contrast(md(reading_ease=50.0), "reading_ease").phrase == (
        "harder to read (Flesch 50 vs 70)"
    )
    assert contrast(md(lexical_diversity=0.7), "lexical_diversity").phrase == (
        "more repetitive vocabulary (0.70 vs 0.80)"
    )


def test_the_account_reads_as_one_sentence_with_what_is_the_same():
    a = account(md(words=80.0, sentence_words=8.0, first_person_per_100_words=0.5, rating=4.25))
    assert a.text == (
        "Writes about twice as much as the representative reviewers (80 vs 40 words), in "
        "shorter sentences (8 vs 12 words); less first person (0.5 vs 3.0 per 100 words); "
        "rates 0.25 stars higher (4.25 vs 4.00). About the same: vocabulary variety, "
        "readability, exclamation marks, questions, sentiment."
    )


def test_overall_pools_the_items_and_says_how_many():
    items = [md("a", words=80.0), md("b", words=120.0)]
    pooled = overall(items)
    assert pooled is not None and pooled.items == 2 and pooled.item_id == ""
    assert pooled.text.startswith(
        "Over 2 comparison items: writes about 3 times as much as the representative "
        "reviewers (100 vs 40 words)."
    )
    assert overall([]) is None


@pytest.mark.slow
def test_accounts_on_a_real_dev_data_comparison_set(mi5_db):
    """The measured account of a real user's comparison items agrees with the numbers."""
    from dpl_engine import Engine
    from dpl_engine.method.measures import measured_differences
    from tests.engine.fakes import FakeEmbedder, FakeGenerator
    from user_store import UserStore

    store = UserStore(mi5_db)
    try:
        engine = Engine(store, FakeGenerator(), FakeEmbedder())
        target = engine.held_out_target("A2EZWZ8MBEDOLN")
        comparisons = engine.comparisons(target)
        assert comparisons, "this dev-data user has comparison items"
        measured = [measured_differences(c) for c in comparisons]
    finally:
        store.close()
    pooled, per_item = describe.accounts(measured)
    assert pooled is not None and len(per_item) == len(measured)
    for m, a in zip(measured, per_item, strict=True):
        assert a.item_id == m.item_id and a.text.endswith(".")
        words = next(c for c in a.contrasts if c.measure == "words")
        ratio = m.user.words / m.others.words
        # The direction in words follows the counted numbers.
        assert words.direction == (
            0 if 1 / SAME_RATIO <= ratio <= SAME_RATIO else (1 if ratio > 1 else -1)
        )
        if words.direction:
            assert f"({m.user.words:.0f} vs {m.others.words:.0f} words)" in a.text
    assert len(measured) >= 2  # so the pooled account speaks of several items
    assert pooled.text.startswith(f"Over {len(measured)} comparison items")
