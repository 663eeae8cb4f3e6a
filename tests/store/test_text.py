"""Review text for people and prompts: HTML leftovers decoded, the stored text untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from user_store import Review, UserStore
from user_store.text import collapse_whitespace, readable


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("an &#34;audiophile&#34; cable", 'an "audiophile" cable'),
        ("it&#8217;s great &amp; cheap &lt;3", "it\u2019s great & cheap <3"),
        ("first line<br />second<BR>third<br/>", "first line\nsecond\nthird\n"),
        ("amazon.com/dp/X?ie=UTF8&qid=139&sr=8-1", "amazon.com/dp/X?ie=UTF8&qid=139&sr=8-1"),
        ("&sr; and &notanentity; stay", "&sr; and &notanentity; stay"),
        ("plain text", "plain text"),
    ],
)
def test_readable_decodes_only_complete_references_and_breaks(stored, shown):
    assert readable(stored) == shown


def test_collapse_whitespace():
    assert collapse_whitespace("  two  spaces\n\tand a tab ") == "two spaces and a tab"


def test_the_store_keeps_the_text_as_imported(tmp_path: Path):
    text = "A &#34;quiet&#34; pedal<br />No hum."
    with UserStore(tmp_path / "s.db") as store:
        store.upsert_reviews([Review("u", "i", 5.0, "t", text, 1)])
        assert store.review("u", "i").text == text
