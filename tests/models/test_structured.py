"""JSON calls over any stream (models.structured): what a call that retried reports."""

from __future__ import annotations

import pytest

from models import SamplingParams, StructuredOutputError
from models.base import GenerationStats, TextStream
from models.structured import complete_json

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


class Scripted(TextStream):
    """One attempt's answer, written at once, with the stats a backend would report."""

    def __init__(self, text: str, prompt: int, completion: int, seconds: float) -> None:
        self._text, self._stats = text, (prompt, completion, seconds)
        self._done = False

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        self._done = True
        self.text = self._text
        prompt, completion, seconds = self._stats
        reason = "stop" if self._text.endswith("}") else "length"
        self.stats = GenerationStats(prompt, completion, 0.5, seconds, 0.0, reason)
        return self._text

    def close(self) -> None:
        self._done = True


def attempts(*answers: Scripted):
    seeds: list[int | None] = []
    queue = list(answers)

    def open_stream(params: SamplingParams) -> TextStream:
        seeds.append(params.seed)
        return queue.pop(0)

    return open_stream, seeds


def test_a_call_that_retried_reports_the_tokens_and_seconds_of_every_attempt() -> None:
    open_stream, seeds = attempts(
        Scripted('{"answer": "cut sh', 300, 64, 2.5), Scripted('{"answer": "ok"}', 300, 9, 1.5)
    )
    value, stats = complete_json("m", open_stream, SCHEMA, SamplingParams(seed=7), retries=1)
    assert value == {"answer": "ok"}
    assert seeds == [7, 8]
    assert stats.attempts == 2
    assert (stats.prompt_tokens, stats.completion_tokens) == (600, 73)
    assert stats.total_s == pytest.approx(4.0)
    assert stats.tokens_per_s == pytest.approx(73 / 3.0)  # decoding: 2.0 s + 1.0 s
    assert stats.finish_reason == "stop" and stats.time_to_first_token_s == 0.5


def test_a_call_that_did_not_retry_reports_its_one_attempt_as_it_was() -> None:
    only = Scripted('{"answer": "ok"}', 120, 9, 1.0)
    open_stream, _ = attempts(only)
    _, stats = complete_json("m", open_stream, SCHEMA, SamplingParams(seed=1), retries=1)
    assert stats.attempts == 1 and stats is only.stats


def test_a_call_whose_attempts_all_fail_says_how_many_it_made() -> None:
    open_stream, seeds = attempts(Scripted('{"answer', 50, 64, 1.0), Scripted("[1]", 50, 3, 0.2))
    with pytest.raises(StructuredOutputError, match="after 2 attempts"):
        complete_json("m", open_stream, SCHEMA, SamplingParams(seed=3), retries=1)
    assert seeds == [3, 4]
