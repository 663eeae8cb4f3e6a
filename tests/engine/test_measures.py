"""The measured differences, checked on texts whose counts are known by hand."""

from __future__ import annotations

import pytest

from dpl_engine.method.measures import (
    has_text,
    lexical_diversity,
    measure,
    measured_differences,
    words,
)
from dpl_engine.types import ComparisonSet, ComparisonUser
from user_store import Item

from .fakes import review


def test_counts_on_a_known_text():
    m = measure(review("u", "i", "I love it! My band loves it too. Great value!", rating=5))
    assert m.words == 10  # i love it my band loves it too great value
    assert m.sentence_words == pytest.approx(10 / 3)
    assert m.exclamations_per_100_words == pytest.approx(20.0)
    assert m.first_person_per_100_words == pytest.approx(20.0)  # I, My
    assert m.lexical_diversity == pytest.approx(9 / 10)  # "it" repeats
    assert m.sentiment > 0.5 and m.rating == 5


def test_negative_text_scores_negative_and_empty_text_is_zero():
    assert measure(review("u", "i", "Awful. It broke and I hate it.")).sentiment < -0.3
    empty = measure(review("u", "i", "   "))
    assert (empty.words, empty.sentence_words, empty.sentiment) == (0, 0, 0)
    assert not has_text(review("u", "i", " ... ")) and has_text(review("u", "i", "ok"))


def test_lexical_diversity_uses_a_moving_window_for_long_texts():
    repeated = words("the cat sat " * 40)
    assert lexical_diversity(repeated) == pytest.approx(3 / 50, abs=0.01)
    assert lexical_diversity([]) == 0


def test_others_are_averaged_over_representative_users():
    mine = review("u", "i", "Good.", rating=5)
    others = [
        review("a", "i", "Bad bad bad bad.", rating=1),
        review("b", "i", "Fine really.", rating=3),
    ]
    cs = ComparisonSet(
        Item("i", "i"),
        mine,
        tuple(ComparisonUser(r.user_id, c, 0.1, 0.5, r.rating, r) for c, r in enumerate(others)),
        2,
    )
    md = measured_differences(cs)
    assert md.user.rating == 5 and md.others.rating == 2 and md.others.words == 3
