"""Every prompt the engine sends, in one place, each with a version stored beside its results.

Change a prompt's wording and bump its version: cached differences, profiles
and stored generations are keyed by the version, so old results are never
mistaken for new ones. The ``paper`` preset has prompts of its own: the same
contents as the published method's (free-text differences; a profile built
from the differences per item, then the past reviews), in dpl's words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from models import ChatMessage
from user_store import Item, Review

from ..types import Differences, Method
from .presets import DPL, Preset

DIFFERENCES_VERSION = "differences-v1"
PROFILE_VERSIONS = {"dpl": "profile-dpl-v1", "profile": "profile-plain-v1"}
GENERATION_VERSIONS: dict[str, str] = {
    "none": "generate-none-v1",
    "rag": "generate-rag-v1",
    "profile": "generate-profile-v1",
    "dpl": "generate-dpl-v1",
}
PAPER_DIFFERENCES_VERSION = "differences-paper-v1"
PAPER_PROFILE_VERSIONS = {"dpl": "profile-dpl-paper-v1", "profile": "profile-plain-v1"}
TEXT_VERSIONS = {"readable": "text-readable-v1", "whitespace": "text-whitespace-v1"}
"""How review text is prepared for prompts (``user_store.text``); part of every version."""


def differences_version(preset: Preset = DPL) -> str:
    base = DIFFERENCES_VERSION if preset.structured_differences else PAPER_DIFFERENCES_VERSION
    return f"{base}+{TEXT_VERSIONS[preset.text]}"


def profile_version(kind: str, preset: Preset = DPL) -> str:
    versions = PROFILE_VERSIONS if preset.name == "dpl" else PAPER_PROFILE_VERSIONS
    return f"{versions[kind]}+{TEXT_VERSIONS[preset.text]}"


DIMENSIONS = {
    "writing": "writing style: word choice and sentence structure",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "semantic style: how much information the review packs in and how coherent it is",
}

DIFFERENCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {key: {"type": "string", "minLength": 1} for key in DIMENSIONS},
    "required": list(DIMENSIONS),
    "additionalProperties": False,
}


def method_version(method: Method, preset: Preset = DPL) -> str:
    """The versions of every prompt a method's result depends on, joined."""
    parts = [GENERATION_VERSIONS[method]]
    if method == "dpl":
        parts += [
            (PROFILE_VERSIONS if preset.name == "dpl" else PAPER_PROFILE_VERSIONS)["dpl"],
            DIFFERENCES_VERSION if preset.structured_differences else PAPER_DIFFERENCES_VERSION,
        ]
    elif method == "profile":
        parts.append(PROFILE_VERSIONS["profile"])
    return "+".join([*parts, TEXT_VERSIONS[preset.text]])


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, marked with an ellipsis."""
    text = text.strip()
    if limit is None or len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip() + " …"


def stars(rating: float) -> str:
    return f"{rating:g} out of 5"


Clean = Callable[[str], str]


def item_block(item: Item, clean: Clean = DPL.clean, limit: int | None = None) -> str:
    """The product's title and its description, shortened to ``limit`` characters."""
    lines = [f"Product: {clean(item.title)}"]
    if item.description:
        lines.append(f"Description: {shorten(clean(item.description), limit)}")
    return "\n".join(lines)


def review_block(
    review: Review,
    limit: int | None,
    item: Item | None = None,
    clean: Clean = DPL.clean,
    description_limit: int | None = None,
) -> str:
    lines = [item_block(item, clean, description_limit)] if item is not None else []
    lines += [
        f"Rating: {stars(review.rating)}",
        f"Title: {clean(review.title)}",
        f"Review: {shorten(clean(review.text), limit)}",
    ]
    return "\n".join(lines)


# -- differences ---------------------------------------------------------------
_RESPECTS = "\n".join(f'- "{key}": {meaning}' for key, meaning in DIMENSIONS.items())

DIFFERENCES_SYSTEM = (
    "You study how people write product reviews. You are shown one person's review of a "
    "product and reviews of the same product by other people. Say how the one person's review "
    "differs from the others, concretely and briefly, in three respects:\n"
    + _RESPECTS
    + "\nAnswer with a JSON object that has exactly these three keys, each a short paragraph."
)

PAPER_DIFFERENCES_SYSTEM = (
    "You study how people write product reviews. You are shown one person's review of a "
    "product and reviews of the same product by other people. Describe how the one person's "
    "review differs from the others in three respects: writing style (word choice and sentence "
    "structure), emotional style (sentiment and tone) and semantic style (how dense the "
    "information is and how coherently it hangs together). Write plain prose, one short "
    "paragraph per respect."
)


def differences_messages(
    item: Item,
    user_review: Review,
    others: Sequence[Review | None],
    limits: Sequence[int | None],
    user_limit: int,
    preset: Preset = DPL,
) -> list[ChatMessage]:
    """``others[i]`` is shown shortened to ``limits[i]`` characters; None drops it."""
    clean = preset.clean
    shown = [
        f"Other review {i}:\n{review_block(r, lim, clean=clean)}"
        for i, (r, lim) in enumerate(
            (
                (r, lim)
                for r, lim in zip(others, limits, strict=True)
                if r is not None and lim is not None
            ),
            start=1,
        )
    ]
    if preset.structured_differences:
        system = DIFFERENCES_SYSTEM
        ask = "Reply with the JSON object only."
    else:
        system = PAPER_DIFFERENCES_SYSTEM
        ask = "Answer in three short paragraphs: writing, emotional and semantic style."
    user = (
        f"{item_block(item, clean, preset.description_chars)}\n\n"
        f"The person's review:\n{review_block(user_review, user_limit, clean=clean)}\n\n"
        + "\n\n".join(shown)
        + f"\n\nHow does the person's review differ from the other reviews? {ask}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- profiles ------------------------------------------------------------------
PROFILE_SYSTEM = (
    "You describe how a particular person reviews products, so that a writer could imitate "
    "them. Be specific and brief: at most 150 words, plain prose, no lists of products."
)


def differences_text(d: Differences) -> str:
    """The entry as lines; a dimension left empty (dropped as uninformative) is skipped."""
    if not d.structured:
        return d.raw.strip()
    return "\n".join(
        f"- {label}: {getattr(d, key).strip()}"
        for key, label in (
            ("writing", "Writing"),
            ("emotional", "Emotion"),
            ("semantic", "Content"),
        )
        if getattr(d, key).strip()
    )


PROFILE_ASK = (
    "Write a profile of this person as a reviewer: what they care about, how they rate, "
    "their word choice, sentence structure, tone and level of detail"
)


def profile_messages(
    kind: str,
    past: Sequence[tuple[Review, Item]],
    limits: Sequence[int | None],
    differences: Sequence[tuple[Item, Differences]] = (),
    preset: Preset = DPL,
    measured: Sequence[tuple[str, str]] = (),
) -> list[ChatMessage]:
    """The profile prompt; ``kind='profile'`` is the ablation and never sees differences.

    Under ``dpl`` the past reviews come first and the differences name their item;
    under ``paper`` each comparison item's title and description come with its
    differences, ahead of the past reviews, as in the published method.
    ``measured``: (what, account) pairs, the measured differences in words, given to the
    ``dpl`` prompt just before the model's differences when that option is on."""
    clean = preset.clean
    reviews = "\n\n".join(
        f"Past review {i}:\n{review_block(r, lim, item, clean, preset.description_chars)}"
        for i, ((r, item), lim) in enumerate(
            ((p, lim) for p, lim in zip(past, limits, strict=True) if lim is not None), start=1
        )
    )
    past_part = f"Reviews this person wrote before:\n\n{reviews or '(none)'}"
    if kind != "dpl":
        parts = [past_part, PROFILE_ASK + "."]
    else:
        if preset.name == "paper":
            diffs = "\n\n".join(
                f"{item_block(item, clean, preset.description_chars)}\n"
                "How this person's review of it differed:\n"
                f"{differences_text(d)}"
                for item, d in differences
            )
        else:
            diffs = "\n\n".join(
                f"Compared with other reviewers of {clean(item.title)}:\n{differences_text(d)}"
                for item, d in differences
            )
        measured_part = []
        if measured:
            lines = "\n".join(f"- {what}: {text}" for what, text in measured)
            measured_part = [
                "Measured from the texts themselves (counted, not judged by a model), this "
                f"person's reviews against other people's reviews of the same products:\n{lines}"
            ]
        diffs_part = (
            "How this person's reviews differed from other people's reviews of the same "
            f"products:\n\n{diffs or '(no comparison was possible)'}"
        )
        ask = PROFILE_ASK + ", and above all what sets them apart from other reviewers."
        parts = (
            [*measured_part, diffs_part, past_part, ask]
            if preset.name == "paper"
            else [past_part, *measured_part, diffs_part, ask]
        )
    return [
        {"role": "system", "content": PROFILE_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


# -- generation ----------------------------------------------------------------
GENERATION_SYSTEM = (
    "You write a product review as a particular person would write it. Output only the text of "
    "the review: no title line, no rating line, no preamble."
)


def generation_messages(
    method: Method,
    item: Item,
    rating: float,
    title: str,
    past: Sequence[tuple[Review, Item]] = (),
    limits: Sequence[int | None] = (),
    profile: str | None = None,
    preset: Preset = DPL,
) -> list[ChatMessage]:
    clean = preset.clean
    parts: list[str] = []
    if method != "none":
        reviews = "\n\n".join(
            f"Earlier review {i}:\n{review_block(r, lim, it, clean, preset.description_chars)}"
            for i, ((r, it), lim) in enumerate(
                ((p, lim) for p, lim in zip(past, limits, strict=True) if lim is not None), start=1
            )
        )
        parts.append(f"Reviews this person wrote earlier:\n\n{reviews or '(none)'}")
    if method in ("profile", "dpl") and profile is not None:
        parts.append(f"About this person as a reviewer:\n{profile.strip()}")
    parts.append(
        "Now write this person's review of the following product.\n"
        f"{item_block(item, clean, preset.description_chars)}\n"
        f"Their rating: {stars(rating)}\nTheir review title: {clean(title)}"
    )
    return [
        {"role": "system", "content": GENERATION_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
