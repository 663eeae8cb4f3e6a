"""Differences between a user and the comparison users that are measured, not generated.

The LLM's account of how a user differs is only as good as the model; these
numbers (rating, length, sentence length, lexical diversity, readability,
exclamation, question and first-person rates, lexicon sentiment) are computed
from the texts themselves, so a person can check the extracted differences
against them. ``describe.py`` puts them into words.

Readability is the Flesch reading ease (Flesch, 1948):
``206.835 - 1.015 * words/sentences - 84.6 * syllables/words``, higher is
easier (60-70 is plain English). Syllables are counted by a rule (groups of
vowels, a silent final "e" dropped, at least one per word), which is close
enough for comparing two people's reviews, not for grading one text.

Sentiment is VADER's compound score (Hutto & Gilbert, 2014), averaged over the
sentences of a review; the lexicon ships inside the ``vaderSentiment`` wheel.
"""

from __future__ import annotations

import re
from dataclasses import fields
from functools import lru_cache
from statistics import fmean
from typing import Any

from user_store import Review

from ..types import ComparisonSet, MeasuredDifferences, TextMeasures

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves i'm i've i'd i'll".split())
MATTR_WINDOW = 50
"""Window of the moving-average type-token ratio: plain TTR falls as texts grow longer."""


def has_text(review: Review) -> bool:
    """True when the review has any words at all (a few reviews in real data are empty)."""
    return bool(_WORD.search(review.text or ""))


def words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if _WORD.search(s)]


def lexical_diversity(tokens: list[str]) -> float:
    """Moving-average type-token ratio over windows of MATTR_WINDOW words (TTR when shorter)."""
    if not tokens:
        return 0.0
    if len(tokens) <= MATTR_WINDOW:
        return len(set(tokens)) / len(tokens)
    ratios = [
        len(set(tokens[i : i + MATTR_WINDOW])) / MATTR_WINDOW
        for i in range(len(tokens) - MATTR_WINDOW + 1)
    ]
    return fmean(ratios)


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Vowel groups in ``word``, a silent final "e" dropped ("make" 1, "table" 2); at least 1."""
    word = word.lower().strip("'")
    count = len(_VOWEL_GROUP.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(count, 1)


def reading_ease(tokens: list[str], n_sentences: int) -> float:
    """Flesch reading ease of a text with these words and sentences (0.0 for no words)."""
    if not tokens or not n_sentences:
        return 0.0
    per_word = sum(syllables(t) for t in tokens) / len(tokens)
    return 206.835 - 1.015 * (len(tokens) / n_sentences) - 84.6 * per_word


def sentiment(text: str) -> float:
    """Mean VADER compound score of the sentences: -1 (negative) .. 1 (positive)."""
    parts = sentences(text)
    if not parts:
        return 0.0
    analyzer = _vader()
    return fmean(analyzer.polarity_scores(s)["compound"] for s in parts)


def measure(review: Review) -> TextMeasures:
    text = review.text or ""
    tokens = words(text)
    n_words = len(tokens)
    n_sentences = len(sentences(text))
    per_100 = 100.0 / n_words if n_words else 0.0
    return TextMeasures(
        rating=float(review.rating),
        words=float(n_words),
        sentence_words=n_words / n_sentences if n_sentences else 0.0,
        lexical_diversity=lexical_diversity(tokens),
        exclamations_per_100_words=text.count("!") * per_100,
        first_person_per_100_words=sum(t in FIRST_PERSON for t in tokens) * per_100,
        sentiment=sentiment(text),
        reading_ease=reading_ease(tokens, n_sentences),
        questions_per_100_words=text.count("?") * per_100,
    )


def mean_measures(values: list[TextMeasures]) -> TextMeasures:
    """Each measure averaged over ``values`` (all zero for none)."""
    names = [f.name for f in fields(TextMeasures)]
    if not values:
        return TextMeasures(**dict.fromkeys(names, 0.0))
    return TextMeasures(**{n: fmean(getattr(v, n) for v in values) for n in names})


def measured_differences(comparison: ComparisonSet) -> MeasuredDifferences:
    """The user's review against the mean of the representative users' reviews."""
    return MeasuredDifferences(
        item_id=comparison.item.id,
        user=measure(comparison.user_review),
        others=mean_measures([measure(u.review) for u in comparison.users]),
    )
