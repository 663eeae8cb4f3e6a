"""Assembling the final prompt for each method within the model's context.

All four methods share one prompt shape, so they differ only in what they add:
``none`` gives the item, rating and title; ``rag`` adds the retrieved past
reviews; ``profile`` and ``dpl`` add a profile on top (without and with the
differences behind it). Same model, same sampling: the comparison is fair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from models import ChatMessage, TextGenerator
from user_store import Item

from ..types import Method, Profile, Retrieved, Target
from . import prompts
from .budget import fit
from .presets import DPL, Preset


def build(
    generator: TextGenerator,
    method: Method,
    target: Target,
    retrieved: Sequence[Retrieved],
    profile: Profile | None,
    *,
    max_tokens: int,
    max_review_chars: int,
    preset: Preset = DPL,
) -> tuple[list[ChatMessage], list[str]]:
    """The generation prompt and notes on anything shortened or left out to fit."""
    past = [(r.entry.review, r.entry.item) for r in retrieved] if method != "none" else []
    profile_text = profile.text if (profile is not None and method in ("profile", "dpl")) else None

    def assemble(limits: list[int | None]) -> list[ChatMessage]:
        return prompts.generation_messages(
            method, target.item, target.rating, target.title, past, limits, profile_text, preset
        )

    return fit(
        generator,
        assemble,
        [len(r.text) for r, _ in past],
        limit=max_review_chars,
        max_tokens=max_tokens,
        what=f"{method} generation",
        labels=[f"item {item.id}" for _, item in past],
    )


def prompt_cost(
    generator: TextGenerator,
    method: Method,
    target: Target,
    retrieved: Sequence[Retrieved],
    profile: Profile | None,
    *,
    max_tokens: int,
    max_review_chars: int,
    preset: Preset = DPL,
) -> dict[str, int]:
    """What each part of the generation prompt costs in tokens, found by taking the parts
    away one after another: the item descriptions, then the past reviews, then the profile;
    ``rest`` is what remains (instructions, the target's title and rating)."""

    def tokens(t: Target, found: Sequence[Retrieved], p: Profile | None) -> int:
        messages, _ = build(
            generator,
            method,
            t,
            found,
            p,
            max_tokens=max_tokens,
            max_review_chars=max_review_chars,
            preset=preset,
        )
        return generator.count_tokens(messages)

    def bare(item: Item) -> Item:
        return replace(item, description="")

    plain = replace(target, item=bare(target.item))
    plain_found = [replace(r, entry=replace(r.entry, item=bare(r.entry.item))) for r in retrieved]
    full = tokens(target, retrieved, profile)
    no_descriptions = tokens(plain, plain_found, profile)
    no_past = tokens(plain, [], profile)
    rest = tokens(plain, [], None)
    return {
        "total": full,
        "descriptions": full - no_descriptions,
        "past_reviews": no_descriptions - no_past,
        "profile": no_past - rest,
        "rest": rest,
    }
