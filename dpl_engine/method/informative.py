"""Telling an LLM difference that says something from one that only echoes the prompt.

A small model asked how a review differs often answers with the prompt itself:
a dimension's name or description ("emotional style: sentiment and tone"), the
rating ("Rating: 5 out of 5"), the item id or title, a field label ("Product
Review"), the same sentence under every dimension, or a sentence that compares
nothing ("worryful"). Shown like a finding, that is noise passed off as signal.

``check`` marks each entry of a ``Differences`` with the first rule it breaks:

1. empty: no words at all;
2. echo: it holds a dimension's description word for word ("sentiment and
   tone"), or it compares nothing and either every content word (stop words
   and comparison connectives aside, plurals folded) comes from the prompt's
   own scaffolding, that is the dimension names and descriptions, the
   instructions and field labels, the item's id and title, and the rating,
   or it opens with one of the prompt's field labels ("Product: ..."); the
   reason names which;
3. repeat: its content words are (almost) those of an earlier dimension of the
   same item (Jaccard overlap of word sets at least ``REPEAT_OVERLAP``);
4. not comparative: it holds no comparison word (a connective such as "more",
   "less", "than", "unlike", "others", or a comparative adjective from a fixed
   list such as "shorter", "calmer"), so it describes at most the one review,
   never how it differs;
5. no quality: it compares but names nothing ("more than the others").

The rules read only the text and the prompt's inputs, so they work the same
for any model; a better model shows up as a lower share of flagged entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..types import ComparisonSet, Differences
from . import prompts

RULES_VERSION = "informative-v1"
"""Stored with profiles built without the flagged entries: change a rule, bump it."""
REPEAT_OVERLAP = 0.8
"""Word-set overlap (Jaccard) from which an entry repeats an earlier dimension."""

_WORD = re.compile(r"[a-z0-9]+")

STOP = frozenset(
    """a an the and or but so of in on at to for with by from as is are was were be been being
    it its it's this that these those there their they them he she his her him i me my we our you
    your has have had do does did not no nor very quite just also too then into about over under
    up down out much many some any each every all both which who whom what how when where s t
    """.split()
)
"""Words that carry no content of their own."""

CONNECTIVES = frozenset(
    """more less fewer most least than unlike whereas while instead rather compared comparison
    contrast other others another rest everyone differ differs different differently difference
    similar same likewise either neither versus vs""".split()
)
"""Words that make a sentence a comparison without naming a quality ("more than the others")."""

COMPARATIVE_WORDS = frozenset(
    """longer shorter simpler harder easier higher lower warmer cooler stronger weaker richer
    poorer fuller broader narrower deeper shallower wider briefer terser clearer vaguer denser
    sparser plainer fancier happier angrier better worse calmer louder quieter bolder milder
    sharper softer harsher kinder friendlier livelier drier wordier chattier longest shortest
    best worst""".split()
)
"""Comparative adjectives: they compare and name a quality at once ("shorter sentences")."""

LABEL_WORDS = frozenset(
    """product description rating title review reviews person people person's json object key
    keys paragraph paragraphs short star stars style styles respect respects reply answer""".split()
)
"""The field labels and instruction words the differences prompt itself uses."""

FIELD_LABELS = ("product", "description", "rating", "title", "review")
"""The fields the prompt writes as ``Label: value``; an answer opening with one copies the form."""
_FIELD = re.compile(r"^\s*(?:" + "|".join(FIELD_LABELS) + r")\s*:", re.IGNORECASE)

DIMENSION_NAMES = {
    "writing": "writing style",
    "emotional": "emotional style",
    "semantic": "semantic style",
}


@dataclass(frozen=True)
class Verdict:
    dimension: str
    """'writing', 'emotional', 'semantic', or 'raw' for free text (no valid JSON)."""
    informative: bool
    reason: str = ""
    """Why it is uninformative ("" when informative), e.g. "echoes the rating"."""


def _fold(word: str) -> str:
    """Plurals folded so 'reviews' matches 'review' ('ss' words such as 'less' kept)."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'").replace("'s", ""))


def content(text: str) -> set[str]:
    """The words that name something: stop words and comparison connectives left out."""
    return {_fold(t) for t in tokens(text) if t not in STOP and t not in CONNECTIVES}


def _words(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in content(t)}


_DIMENSION_WORDS = _words([*prompts.DIMENSIONS, *prompts.DIMENSIONS.values()])
_INSTRUCTION_WORDS = _words([prompts.DIFFERENCES_SYSTEM]) | {_fold(w) for w in LABEL_WORDS}


def _echo(words: set[str], comparison: ComparisonSet | None) -> str:
    """Which part of the prompt an entry's content words all come from ("" if not all do)."""
    item_words: set[str] = set()
    rating_words: set[str] = set()
    if comparison is not None:
        item_words = content(comparison.item.id) | content(comparison.item.title)
        rating = comparison.user_review.rating
        rating_words = content(prompts.stars(rating)) | {f"{rating:g}"}
    scaffold = _DIMENSION_WORDS | _INSTRUCTION_WORDS | item_words | rating_words
    if not words <= scaffold:
        return ""
    if comparison is not None and content(comparison.item.id) & words:
        return "echoes the item id"
    if words & rating_words and words <= rating_words | _INSTRUCTION_WORDS:
        return "echoes the rating"
    if words <= _DIMENSION_WORDS | {"style", "styles"}:
        return "echoes the dimension's name or description"
    if item_words and words & item_words and words <= item_words | _INSTRUCTION_WORDS:
        return "echoes the item title"
    return "echoes the prompt's labels and instructions"


def _restates_description(text: str) -> bool:
    """True when ``text`` holds a dimension's description from the prompt word for word."""
    flat = " ".join(tokens(text))
    return any(
        " ".join(tokens(meaning.split(":", 1)[1])) in flat
        for meaning in prompts.DIMENSIONS.values()
    )


def is_comparative(text: str) -> bool:
    """True when ``text`` holds a word that compares (CONNECTIVES, COMPARATIVE_WORDS)."""
    return any(t in CONNECTIVES or t in COMPARATIVE_WORDS for t in tokens(text))


def judge_text(
    text: str,
    comparison: ComparisonSet | None = None,
    earlier: Sequence[tuple[str, str]] = (),
) -> str:
    """The reason ``text`` is uninformative, or "" when it says something.

    ``earlier``: (dimension, text) of the item's dimensions before this one."""
    if not tokens(text):
        return "empty"
    words = content(text)
    comparative = is_comparative(text)
    if _restates_description(text):
        # The prompt's own line ("sentiment and tone"), whatever follows it.
        return "echoes the dimension's name or description"
    # Otherwise a sentence that compares is never called an echo: "more emotional than the
    # others" uses a dimension's own word and still says something.
    if not comparative and comparison is not None and comparison.item.id.lower() in tokens(text):
        return "echoes the item id"
    if not comparative and words:
        echo = _echo(words, comparison)
        if echo:
            return echo
        if _FIELD.match(text):
            return 'copies a field of the prompt ("Label: value")'
    for dimension, before in earlier:
        seen = content(before)
        if words and seen and len(words & seen) / len(words | seen) >= REPEAT_OVERLAP:
            return f"repeats the {DIMENSION_NAMES.get(dimension, dimension)} entry"
    if not comparative:
        return "says nothing comparative"
    if not words:
        return "names no quality"  # "more than the others": compared, but in what?
    return ""


def check(differences: Differences, comparison: ComparisonSet | None = None) -> list[Verdict]:
    """One verdict per dimension (or one 'raw' verdict for free text), in prompt order."""
    if not differences.structured:
        reason = judge_text(differences.raw, comparison)
        return [Verdict("raw", not reason, reason)]
    verdicts: list[Verdict] = []
    earlier: list[tuple[str, str]] = []
    for key in prompts.DIMENSIONS:
        text = getattr(differences, key)
        reason = judge_text(text, comparison, earlier)
        verdicts.append(Verdict(key, not reason, reason))
        earlier.append((key, text))
    return verdicts


def check_all(
    found: Sequence[Differences], comparisons: Sequence[ComparisonSet]
) -> dict[str, list[Verdict]]:
    """Verdicts per item id; ``comparisons`` give each item's title, id and rating."""
    by_item = {c.item.id: c for c in comparisons}
    return {d.item_id: check(d, by_item.get(d.item_id)) for d in found}


@dataclass(frozen=True)
class Share:
    flagged: int
    total: int

    @property
    def fraction(self) -> float | None:
        return self.flagged / self.total if self.total else None


def share(found: Sequence[Differences], comparisons: Sequence[ComparisonSet]) -> Share:
    """How many of the entries (dimensions, or free-text answers) are uninformative."""
    by_item = {c.item.id: c for c in comparisons}
    verdicts = [v for d in found for v in check(d, by_item.get(d.item_id))]
    return Share(sum(not v.informative for v in verdicts), len(verdicts))


def informative_only(
    found: Sequence[Differences], comparisons: Sequence[ComparisonSet]
) -> list[Differences | None]:
    """Each entry with its uninformative dimensions blanked; None when nothing is left."""
    from dataclasses import replace

    out: list[Differences | None] = []
    by_item = {c.item.id: c for c in comparisons}
    for d in found:
        flagged = {v.dimension for v in check(d, by_item.get(d.item_id)) if not v.informative}
        if not d.structured:
            out.append(None if flagged else d)
            continue
        kept = replace(d, **{k: "" for k in flagged})
        out.append(None if len(flagged) == len(prompts.DIMENSIONS) else kept)
    return out
