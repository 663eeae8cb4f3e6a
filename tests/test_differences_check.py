"""The differences check itself fails on the inputs it exists to catch."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from dpl_engine.types import Differences
from tests.differences_check import assert_read, fallbacks

GOOD = {"writing": "terse", "emotional": "calm", "semantic": "about the tone"}


def parsed(value: dict, **fields) -> Differences:
    """An answer whose raw JSON is ``value``; its fields as the engine would copy them,
    unless ``fields`` says otherwise."""
    copied = {key: value.get(key, "") for key in GOOD} | fields
    return Differences("B01", **copied, structured=True, raw=json.dumps(value))


def kept(raw: str) -> Differences:
    return Differences("B01", "", "", "", structured=False, raw=raw)


def test_parsed_and_kept_answers_are_counted():
    assert fallbacks([parsed(GOOD), kept("free text"), asdict(parsed(GOOD))]) == (2, 1)
    assert assert_read([parsed(GOOD), parsed(GOOD), kept("x")], max_fallback_share=0.5) == 2


@pytest.mark.parametrize(
    "entries",
    [
        [kept("free text"), kept("more")],  # every answer a fallback
        [parsed({**GOOD, "semantic": ""})],  # the schema wants every field
        [parsed({**GOOD, "extra": "x"})],  # and nothing else
        [parsed(GOOD, writing="not what the JSON says")],
        [kept("   ")],  # a fallback with nothing kept
        [],
    ],
)
def test_it_fails_on_what_it_exists_to_catch(entries):
    with pytest.raises(Exception):  # noqa: B017 - an AssertionError or the schema's error
        assert_read(entries, max_fallback_share=0.5)
