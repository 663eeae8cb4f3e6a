"""JSON calls over any stream (models.structured): what a call that retried reports, and
the limit and seed each retry gets."""

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


def attempts(*answers: Scripted, limits: list[int] | None = None):
    seeds: list[int | None] = []
    queue = list(answers)

    def open_stream(params: SamplingParams) -> TextStream:
        seeds.append(params.seed)
        if limits is not None:
            limits.append(params.max_tokens)
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


CUT = '{"answer": "cut sh'  # ends without its brace: the Scripted stream says "length"


@pytest.mark.parametrize(
    ("room", "second"),
    [(None, 128), (1000, 128), (100, 100), (40, 64)],  # no bound, room, some room, none
)
def test_a_cut_off_answer_is_retried_with_twice_its_limit_as_far_as_the_context_allows(
    room, second
) -> None:
    limits: list[int] = []
    open_stream, seeds = attempts(
        Scripted(CUT, 300, 64, 2.5), Scripted('{"answer": "ok"}', 300, 90, 1.5), limits=limits
    )
    params = SamplingParams(max_tokens=64, seed=7)
    bound = None if room is None else (lambda: room)
    value, stats = complete_json("m", open_stream, SCHEMA, params, retries=1, room=bound)
    assert value == {"answer": "ok"} and stats.attempts == 2
    assert limits == [64, second] and seeds == [7, 8]


def test_an_answer_that_was_not_cut_off_is_retried_with_the_same_limit() -> None:
    limits: list[int] = []
    open_stream, _ = attempts(
        Scripted('{"other": 1}', 50, 6, 0.5),
        Scripted('{"answer": "ok"}', 50, 9, 0.5),
        limits=limits,
    )
    asked: list[int] = []
    params = SamplingParams(max_tokens=64, seed=1)
    complete_json("m", open_stream, SCHEMA, params, room=lambda: asked.append(1) or 1000)
    assert limits == [64, 64] and not asked  # the room is asked only after a cut-off


@pytest.mark.parametrize(
    ("first", "room", "made"),
    [
        (Scripted('{"other": 1}', 50, 6, 0.5), 1000, 1),  # not cut: greedy would repeat it
        (Scripted(CUT, 50, 64, 1.0), 64, 1),  # cut, and no room to grow: the same again
        (Scripted(CUT, 50, 64, 1.0), 1000, 2),  # cut, and a longer limit to try
    ],
)
def test_at_temperature_0_a_retry_is_made_only_where_it_can_differ(first, room, made) -> None:
    open_stream, _ = attempts(first, Scripted('{"answer', 50, 128, 2.0))
    greedy = SamplingParams(max_tokens=64, temperature=0.0, seed=1)
    with pytest.raises(StructuredOutputError) as err:
        complete_json("m", open_stream, SCHEMA, greedy, retries=1, room=lambda: room)
    assert err.value.attempts == made and err.value.stats.attempts == made
    assert f"after {made} attempt{'s' if made > 1 else ''}." in str(err.value)


def test_a_call_that_failed_reports_the_tokens_of_every_attempt() -> None:
    open_stream, _ = attempts(Scripted(CUT, 300, 64, 2.5), Scripted(CUT, 300, 128, 4.0))
    with pytest.raises(StructuredOutputError) as err:
        complete_json("m", open_stream, SCHEMA, SamplingParams(max_tokens=64, seed=7))
    spent = err.value.stats
    assert (spent.attempts, spent.prompt_tokens, spent.completion_tokens) == (2, 600, 192)
    assert err.value.raw == CUT and "max_tokens=128" in str(err.value)
