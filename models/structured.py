"""JSON-schema-constrained generation on top of any streaming backend.

Each backend constrains decoding its own way (a llama.cpp grammar, a server's
``response_format``); what follows is shared: validate the text with
``jsonschema`` on our side, retry with the next seed, and give up with the raw
text so the engine can keep it as free text.

An answer cut off by its token limit is retried with twice the limit, as far as
the context leaves room: room for an answer that runs long, and at temperature 0
the only change that can make the retry write anything else. A retry that could
only repeat its attempt (temperature 0, nothing changed but the seed) is not made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .base import GenerationStats, SamplingParams, TextStream
from .errors import GenerationCancelled, StructuredOutputError

RETRY_GROWTH = 2
"""A retry of an answer cut off at its token limit gets this many times the limit."""


def complete_json(
    model_id: str,
    open_stream: Callable[[SamplingParams], TextStream],
    schema: dict[str, Any],
    params: SamplingParams,
    *,
    retries: int = 1,
    stop: Callable[[], bool] | None = None,
    room: Callable[[], int] | None = None,
) -> tuple[dict[str, Any], GenerationStats]:
    """Stream attempts from ``open_stream(params)`` until one validates against ``schema``.

    Attempt ``a`` samples with seed ``params.seed + a``. After an attempt cut off at its
    token limit the next gets ``RETRY_GROWTH`` times that limit, at most ``room()`` (the
    tokens the context leaves after the prompt, asked only then; None: no bound known).
    At temperature 0 a retry that would repeat its attempt is left out. ``stop`` is asked
    after every token (and by streams that support it, while waiting for one)."""
    import jsonschema

    raw, problem = "", ""
    spent: list[GenerationStats] = []
    current = params
    for attempt in range(retries + 1):
        seed = None if params.seed is None else params.seed + attempt
        current = tried = replace(current, seed=seed)
        with open_stream(current) as s:
            for _ in s:
                if stop is not None and stop():
                    s.close()
                    raise GenerationCancelled(
                        f"{model_id}: the JSON generation was stopped by its caller."
                    )
        assert s.stats is not None
        spent.append(s.stats)
        if s.stats.finish_reason == "cancelled":
            raise GenerationCancelled(f"{model_id}: the JSON generation was stopped by its caller.")
        raw = s.text
        try:
            value = json.loads(raw)
            jsonschema.validate(value, schema)
        except json.JSONDecodeError as err:
            problem = f"not valid JSON ({err.msg} at position {err.pos})"
            if s.stats.finish_reason == "length":
                problem += f"; output stopped at max_tokens={current.max_tokens}"
            if s.stats.finish_reason == "length" and attempt < retries:
                grown = current.max_tokens * RETRY_GROWTH
                if room is not None:
                    grown = max(current.max_tokens, min(grown, room()))
                current = replace(current, max_tokens=grown)
        except jsonschema.ValidationError as err:
            problem = f"does not match the schema ({err.message})"
        else:
            if isinstance(value, dict):
                return value, _summed(spent)
            problem = "is not a JSON object"
        if current.temperature <= 0 and current.max_tokens == tried.max_tokens:
            break  # greedy decoding of the same prompt and limit would write the same text
    raise StructuredOutputError(
        f"{model_id} returned output that is {problem}, after {len(spent)} "
        f"attempt{'s' if len(spent) != 1 else ''}. Raise max_tokens or use a larger model.",
        raw=raw,
        attempts=len(spent),
        stats=_summed(spent),
    )


def _summed(spent: list[GenerationStats]) -> GenerationStats:
    """The last attempt's stats with the tokens and seconds of all of them."""
    last = spent[-1]
    if len(spent) == 1:
        return last
    completion = sum(s.completion_tokens for s in spent)
    decoding = sum(s.total_s - s.time_to_first_token_s for s in spent)
    return replace(
        last,
        prompt_tokens=sum(s.prompt_tokens for s in spent),
        completion_tokens=completion,
        total_s=sum(s.total_s for s in spent),
        tokens_per_s=completion / decoding if decoding > 0 else last.tokens_per_s,
        attempts=len(spent),
    )
