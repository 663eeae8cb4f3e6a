"""Condensing past reviews (and, for DPL, the extracted differences) into a profile of the user.

The ``dpl`` profile is told how the user differs from others; the ``profile``
ablation sees the same past reviews but no differences, so comparing the two
isolates what the differences add. With ``EngineConfig.measured_in_profile`` the
``dpl`` profile also gets the measured account (``describe.py``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from models import SamplingParams, TextGenerator
from user_store import Item

from ..types import Cancelled, CancelToken, Differences, Profile, Retrieved
from . import prompts
from .budget import fit
from .presets import DPL, Preset


def write(
    generator: TextGenerator,
    kind: str,
    retrieved: Sequence[Retrieved],
    differences: Sequence[tuple[Item, Differences]],
    params: SamplingParams,
    *,
    max_review_chars: int,
    cancel: CancelToken | None = None,
    preset: Preset = DPL,
    measured: Sequence[tuple[str, str]] = (),
) -> Generator[str, None, tuple[Profile, list[str]]]:
    """One streamed LLM call: yields the profile's text deltas as they are written and
    returns the profile. Raises Cancelled (after closing the stream) when cancelled, so a
    half-written profile never becomes a value.

    ``measured``: (what, account) pairs of measured differences for the ``dpl`` prompt."""
    if kind not in prompts.PROFILE_VERSIONS:
        raise ValueError(f"unknown profile kind {kind!r}")
    past = [(r.entry.review, r.entry.item) for r in retrieved]
    diffs = differences if kind == "dpl" else ()

    def build(limits: list[int | None]) -> list[dict[str, str]]:
        return prompts.profile_messages(
            kind, past, limits, diffs, preset, measured if kind == "dpl" else ()
        )

    messages, notes = fit(
        generator,
        build,
        [len(r.text) for r, _ in past],
        limit=max_review_chars,
        max_tokens=params.max_tokens,
        what=f"{kind} profile",
        labels=[f"item {item.id}" for _, item in past],
    )
    with generator.stream(messages, params) as stream:
        for delta in stream:
            if cancel is not None and cancel.cancelled:
                stream.close()
                raise Cancelled()
            yield delta
    text = stream.text.strip()
    if not text:
        notes.append(f"{kind} profile: the model returned an empty profile")
    return Profile(kind=kind, text=text), notes  # type: ignore[arg-type]
