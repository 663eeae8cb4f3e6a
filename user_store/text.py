"""Review text as people should read it, without changing what the store keeps.

Amazon review dumps carry HTML leftovers: ``&#34;audiophile&#34;`` for quotes and
``<br />`` for line breaks. The store keeps the text exactly as imported (its
fingerprint, embeddings and evaluation references depend on that); prompts and
screens pass it through ``readable`` first. ``collapse_whitespace`` is the only
change the paper's preparation makes to review text.
"""

from __future__ import annotations

import html
import re
from html.entities import html5

# Only complete references (with the semicolon): "&qid=3" in a pasted URL stays as it is.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def readable(text: str) -> str:
    """``text`` with HTML character references decoded and ``<br />`` made a line break."""
    if "&" not in text and "<" not in text:
        return text
    text = _BREAK.sub("\n", text)
    return _ENTITY.sub(_decode, text)


def _decode(match: re.Match[str]) -> str:
    ref = match.group(0)
    if ref[1] != "#" and ref[1:] not in html5:  # "&qid;" is no entity: leave it as written
        return ref
    return html.unescape(ref)


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines included) as one space, ends trimmed."""
    return _SPACES.sub(" ", text).strip()
