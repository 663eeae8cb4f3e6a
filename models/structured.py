"""JSON-schema-constrained generation on top of any streaming backend.

Each backend constrains decoding its own way (a llama.cpp grammar, a server's
``response_format``); what follows is shared: validate the text with
``jsonschema`` on our side, retry with the next seed, and give up with the raw
text so the engine can keep it as free text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .base import GenerationStats, SamplingParams, TextStream
from .errors import GenerationCancelled, StructuredOutputError


def complete_json(
    model_id: str,
    open_stream: Callable[[SamplingParams], TextStream],
    schema: dict[str, Any],
    params: SamplingParams,
    *,
    retries: int = 1,
    stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, Any], GenerationStats]:
    """Stream attempts from ``open_stream(params)`` until one validates against ``schema``.

    Attempt ``a`` samples with seed ``params.seed + a``. ``stop`` is asked after every
    token (and by streams that support it, while waiting for one)."""
    import jsonschema

    raw, problem = "", ""
    spent: list[GenerationStats] = []
    for attempt in range(retries + 1):
        seed = None if params.seed is None else params.seed + attempt
        with open_stream(replace(params, seed=seed)) as s:
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
                problem += f"; output stopped at max_tokens={params.max_tokens}"
            continue
        except jsonschema.ValidationError as err:
            problem = f"does not match the schema ({err.message})"
            continue
        if not isinstance(value, dict):
            problem = "is not a JSON object"
            continue
        return value, _summed(spent)
    raise StructuredOutputError(
        f"{model_id} returned output that is {problem}, after {retries + 1} "
        "attempts. Raise max_tokens or use a larger model.",
        raw=raw,
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
