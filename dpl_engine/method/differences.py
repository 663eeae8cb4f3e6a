"""Asking the model how a user's review differs from the representative reviews of an item.

One call per comparison item. Under the ``dpl`` preset the answer is constrained
to a JSON object with one entry per dimension (writing, emotional and semantic
style); a small model does not always manage valid JSON, and after a retry (with
twice the token limit when the answer was cut off) its free text is kept and marked
as such, so the profile can still use it and the front ends can show it for what it
is. Under ``paper`` the answer is free text, as in the published method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from models import GenerationCancelled, SamplingParams, StructuredOutputError, TextGenerator

from ..types import Cancelled, CancelToken, ComparisonSet, Differences
from . import prompts
from .budget import fit
from .presets import DPL, Preset

RETRIES = 1


@dataclass(frozen=True)
class Extraction:
    """One item's differences, the budget notes of its prompt, and the model calls it took
    (2 when a JSON answer was retried)."""

    differences: Differences
    notes: list[str]
    calls: int = 1


def extract(
    generator: TextGenerator,
    comparison: ComparisonSet,
    params: SamplingParams,
    *,
    max_review_chars: int,
    cancel: CancelToken | None = None,
    preset: Preset = DPL,
) -> Extraction:
    """One LLM call (plus at most one retry).

    Raises Cancelled, within a token, when ``cancel`` is set during the call."""
    import jsonschema

    item, user_review = comparison.item, comparison.user_review
    others = [u.review for u in comparison.users]

    def build(limits: list[int | None]) -> list[dict[str, str]]:
        return prompts.differences_messages(
            item, user_review, others, limits, max_review_chars, preset
        )

    messages, notes = fit(
        generator,
        build,
        [len(r.text) for r in others],
        limit=max_review_chars,
        max_tokens=params.max_tokens,
        what=f"differences for item {item.id}",
        labels=[f"user {r.user_id}" for r in others],
    )
    if not preset.structured_differences:
        return Extraction(_free_text(generator, messages, params, item.id, cancel), notes)
    try:
        value, stats = generator.complete_json(
            messages,
            prompts.DIFFERENCES_SCHEMA,
            params,
            retries=RETRIES,
            stop=None if cancel is None else (lambda: cancel.cancelled),
        )
        jsonschema.validate(value, prompts.DIFFERENCES_SCHEMA)
    except GenerationCancelled as err:
        raise Cancelled() from err
    except StructuredOutputError as err:
        tries = "a retry" if err.attempts > 1 else "one greedy attempt (a retry would repeat it)"
        notes.append(
            f"differences for item {item.id}: the model gave no valid JSON after {tries}; "
            "its free text is kept instead"
        )
        failed = Differences(item.id, "", "", "", structured=False, raw=err.raw)
        return Extraction(failed, notes, err.attempts)
    except jsonschema.ValidationError as err:
        notes.append(
            f"differences for item {item.id}: the model's JSON did not match the schema "
            f"({err.message}); its text is kept instead"
        )
        raw = json.dumps(value, ensure_ascii=False)
        unmatched = Differences(item.id, "", "", "", structured=False, raw=raw)
        return Extraction(unmatched, notes, stats.attempts)
    return Extraction(
        Differences(
            item_id=item.id,
            writing=value["writing"].strip(),
            emotional=value["emotional"].strip(),
            semantic=value["semantic"].strip(),
            structured=True,
            raw=json.dumps(value, ensure_ascii=False),
        ),
        notes,
        stats.attempts,
    )


def _free_text(
    generator: TextGenerator,
    messages: list[dict[str, str]],
    params: SamplingParams,
    item_id: str,
    cancel: CancelToken | None,
) -> Differences:
    with generator.stream(messages, params) as stream:
        for _ in stream:
            if cancel is not None and cancel.cancelled:
                stream.close()
                raise Cancelled()
    return Differences(item_id, "", "", "", structured=False, raw=stream.text.strip())
