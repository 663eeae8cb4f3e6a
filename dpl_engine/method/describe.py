"""The measured differences put into plain words, without a model.

A table of numbers is checkable but slow to read; the LLM's account is quick to
read but may be noise. This module writes a short account from the measures
alone ("writes about twice as much as the representative reviewers (76 vs 36
words), in shorter sentences; far less first person; ..."), per comparison item
and over all of a target's comparison items. Every threshold that decides
"about the same" is a constant below, documented and tested at its edges.

Rules, for the user's value ``u`` against the representative reviewers' mean ``o``:

- ratio measures (words, words per sentence) compare ``u / o``: within
  ``SAME_RATIO`` either way is about the same; beyond ``TWICE_RATIO`` the
  account says "about twice", "about 3 times" or "about half", "about a third";
- every other measure compares ``u - o`` with its own ``same`` step (below it:
  about the same) and ``far`` step (from it on: "far more", "much more").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..types import MeasuredDifferences
from .measures import mean_measures

VERSION = "describe-v1"
"""Stored with profiles built on the account: change the wording or a threshold, bump it."""
OTHERS = "the representative reviewers"

SAME_RATIO = 1.25
"""Lengths within 25% of each other (either way) are about the same."""
TWICE_RATIO = 1.75
"""From 1.75x on a length reads as "about twice" (then "about 3 times", ...)."""


@dataclass(frozen=True)
class Step:
    """Absolute differences below ``same`` are about the same; from ``far`` on they are large."""

    same: float
    far: float


STEPS: dict[str, Step] = {
    # Stars: a quarter star is the smallest gap worth naming (the others' mean of 4 ratings).
    "rating": Step(same=0.25, far=1.0),
    # Moving-average type-token ratio, 0..1.
    "lexical_diversity": Step(same=0.05, far=0.15),
    # Flesch points: 10 is one band of the Flesch scale (60-70 plain, 70-80 fairly easy).
    "reading_ease": Step(same=10.0, far=25.0),
    # Rates per 100 words: one first-person word in 70, one "!" or "?" in 200.
    "first_person_per_100_words": Step(same=1.5, far=4.0),
    "exclamations_per_100_words": Step(same=0.5, far=2.0),
    "questions_per_100_words": Step(same=0.5, far=2.0),
    # VADER compound, -1..1.
    "sentiment": Step(same=0.1, far=0.3),
}
"""Per measure: below ``same`` the account says about the same, from ``far`` on "far"/"much"."""

LABELS = {
    "words": "length",
    "sentence_words": "sentence length",
    "first_person_per_100_words": "first person",
    "lexical_diversity": "vocabulary variety",
    "reading_ease": "readability",
    "exclamations_per_100_words": "exclamation marks",
    "questions_per_100_words": "questions",
    "rating": "rating",
    "sentiment": "sentiment",
}
"""The measures in the order the account names them: how they write, then how they judge."""


@dataclass(frozen=True)
class Contrast:
    measure: str
    """A TextMeasures field name."""
    direction: int
    """+1 the user has more of it, -1 less, 0 about the same."""
    large: bool
    phrase: str
    """The words for it ("" when about the same)."""


@dataclass(frozen=True)
class MeasuredAccount:
    item_id: str
    """The comparison item, or "" for the account over all of a target's items."""
    items: int
    """How many comparison items it covers."""
    contrasts: tuple[Contrast, ...]
    text: str
    """The account as one or two sentences."""

    @property
    def different(self) -> tuple[Contrast, ...]:
        return tuple(c for c in self.contrasts if c.direction)


def _ratio(u: float, o: float) -> float | None:
    """u / o, or None when either is zero (nothing to compare)."""
    if u <= 0 or o <= 0:
        return None
    return u / o


def _times(r: float) -> str:
    """Words for a ratio of at least TWICE_RATIO: 'about twice', 'about 3 times'."""
    n = int(r + 0.5)  # half up: 2.5 reads as "about 3 times"
    return "about twice" if n <= 2 else f"about {n} times"


def _fraction(r: float) -> str:
    """Words for a ratio of at least TWICE_RATIO read the other way: 'about half', 'a third'."""
    n = int(r + 0.5)
    names = {2: "about half", 3: "about a third", 4: "about a quarter"}
    return names.get(n, f"about 1/{n}" if n <= 10 else "a small fraction")


def _length(u: float, o: float) -> Contrast:
    r = _ratio(u, o)
    nums = f"({u:.0f} vs {o:.0f} words)"
    if r is None or 1 / SAME_RATIO <= r <= SAME_RATIO:
        return Contrast("words", 0, False, "")
    if r > SAME_RATIO:
        if r >= TWICE_RATIO:
            return Contrast("words", 1, True, f"writes {_times(r)} as much as {OTHERS} {nums}")
        return Contrast("words", 1, False, f"writes more than {OTHERS} {nums}")
    if 1 / r >= TWICE_RATIO:
        return Contrast("words", -1, True, f"writes {_fraction(1 / r)} as much as {OTHERS} {nums}")
    return Contrast("words", -1, False, f"writes less than {OTHERS} {nums}")


def _sentences(u: float, o: float) -> Contrast:
    r = _ratio(u, o)
    if r is None or 1 / SAME_RATIO <= r <= SAME_RATIO:
        return Contrast("sentence_words", 0, False, "")
    up = r > 1
    large = (r if up else 1 / r) >= TWICE_RATIO
    kind = (
        ("much longer" if large else "longer") if up else ("much shorter" if large else "shorter")
    )
    return Contrast(
        "sentence_words", 1 if up else -1, large, f"in {kind} sentences ({u:.0f} vs {o:.0f} words)"
    )


def _stepped(name: str, u: float, o: float) -> Contrast:
    step = STEPS[name]
    d = round(u - o, 6)  # 0.25 must stay 0.25, not 0.24999999999999
    if abs(d) < step.same:
        return Contrast(name, 0, False, "")
    up, large = d > 0, abs(d) >= step.far
    if name == "rating":
        size = f"{abs(d):.2f}".rstrip("0").rstrip(".")
        stars = "star" if size == "1" else "stars"
        phrase = f"rates {size} {stars} {'higher' if up else 'lower'} ({u:.2f} vs {o:.2f})"
    elif name == "sentiment":
        degree = "much" if large else "slightly"
        phrase = f"{degree} {'more' if up else 'less'} positive ({u:+.2f} vs {o:+.2f})"
    elif name == "reading_ease":
        degree = "much " if large else ""
        phrase = f"{degree}{'easier' if up else 'harder'} to read (Flesch {u:.0f} vs {o:.0f})"
    elif name == "lexical_diversity":
        degree = "much " if large else ""
        kind = "more varied" if up else "more repetitive"
        phrase = f"{degree}{kind} vocabulary ({u:.2f} vs {o:.2f})"
    else:
        what = {
            "first_person_per_100_words": "first person",
            "exclamations_per_100_words": "exclamation marks",
            "questions_per_100_words": "questions",
        }[name]
        few = "less" if name == "first_person_per_100_words" else "fewer"
        degree = "far " if large else ""
        phrase = f"{degree}{'more' if up else few} {what} ({u:.1f} vs {o:.1f} per 100 words)"
    return Contrast(name, 1 if up else -1, large, phrase)


def contrasts(m: MeasuredDifferences) -> tuple[Contrast, ...]:
    """One Contrast per measure, in the order of LABELS."""
    u, o = m.user, m.others
    found = [_length(u.words, o.words), _sentences(u.sentence_words, o.sentence_words)]
    found += [_stepped(name, getattr(u, name), getattr(o, name)) for name in STEPS]
    order = list(LABELS)
    return tuple(sorted(found, key=lambda c: order.index(c.measure)))


def _sentence(found: Sequence[Contrast], items: int) -> str:
    differ = [c for c in found if c.direction]
    same = [LABELS[c.measure] for c in found if not c.direction]
    where = "" if items == 1 else f"Over {items} comparison items: "
    if not differ:
        return f"{where}{'about' if where else 'About'} the same as {OTHERS} on every measure."
    # Length and sentence length read as one clause: "writes more ..., in shorter sentences".
    clauses: list[str] = []
    for c in differ:
        if c.measure == "sentence_words" and clauses and differ[0].measure == "words":
            clauses[-1] += f", {c.phrase}"
        else:
            clauses.append(c.phrase)
    text = "; ".join(clauses)
    text = where + (text[0].upper() + text[1:] if not where else text) + "."
    if same:
        text += " About the same: " + ", ".join(same) + "."
    return text


def account(m: MeasuredDifferences) -> MeasuredAccount:
    """The plain-language account of one comparison item's measured differences."""
    found = contrasts(m)
    return MeasuredAccount(m.item_id, 1, found, _sentence(found, 1))


def overall(measured: Sequence[MeasuredDifferences]) -> MeasuredAccount | None:
    """The account over all comparison items: the user's mean against the others' mean.

    None when there is no comparison item."""
    if not measured:
        return None
    pooled = MeasuredDifferences(
        item_id="",
        user=mean_measures([m.user for m in measured]),
        others=mean_measures([m.others for m in measured]),
    )
    found = contrasts(pooled)
    return MeasuredAccount("", len(measured), found, _sentence(found, len(measured)))


def accounts(
    measured: Sequence[MeasuredDifferences],
) -> tuple[MeasuredAccount | None, list[MeasuredAccount]]:
    """The overall account (None without items) and one account per item, in order."""
    return overall(measured), [account(m) for m in measured]
