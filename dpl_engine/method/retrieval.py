"""Finding the user's past reviews that matter for the target item (BM25).

Only the documents given are indexed (the user's own history, or the part of it
that can be compared), so scores say how relevant a past review is compared with
the user's other reviews, not with the whole corpus. A document is the past
review's title plus its item's description; the query is the target review title
plus the target item's description.

Two scorers, one per preset (see ``presets``): dpl's bm25s over lower-cased,
stemmed tokens without English stop words, where an item with no description is
represented by its title; and the paper's rank-bm25 BM25Okapi over whitespace
tokens exactly as written, ordered as its ``get_top_n`` orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

from user_store import HistoryEntry
from user_store.text import collapse_whitespace

from ..types import Retrieved, Target
from .presets import DPL, Preset


def document(entry: HistoryEntry, preset: Preset = DPL) -> str:
    if preset.bm25 == "okapi-whitespace":
        return collapse_whitespace(f"{entry.review.title} {entry.item.description}")
    return f"{entry.review.title}\n{entry.item.search_text}"


def query(target: Target, preset: Preset = DPL) -> str:
    if preset.bm25 == "okapi-whitespace":
        return collapse_whitespace(f"{target.title} {target.item.description}")
    return f"{target.title}\n{target.item.search_text}"


def _stemmed_tokens(texts: list[str]) -> list[list[str]]:
    import bm25s
    import Stemmer

    return bm25s.tokenize(
        texts,
        stopwords="en",
        stemmer=Stemmer.Stemmer("english"),
        return_ids=False,
        show_progress=False,
    )


def _bm25s_scores(documents: list[str], q: str) -> list[float]:
    import bm25s

    corpus = _stemmed_tokens(documents)
    # bm25s rejects a corpus with no tokens at all; every document then scores 0.
    if not any(corpus):
        return [0.0] * len(documents)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    tokens = _stemmed_tokens([q])[0]
    return [float(s) for s in retriever.get_scores(tokens)] if tokens else [0.0] * len(documents)


def okapi_order(documents: list[str], q: str) -> tuple[list[int], list[float]]:
    """Indices of ``documents`` best first, and their scores, as rank-bm25 ranks them."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    corpus = [d.split() for d in documents]
    if not any(corpus):  # BM25Okapi divides by the corpus length
        return list(range(len(documents)))[::-1], [0.0] * len(documents)
    scores = BM25Okapi(corpus).get_scores(q.split())
    return [int(i) for i in np.argsort(scores)[::-1]], [float(s) for s in scores]


def rank(
    entries: Sequence[HistoryEntry], target: Target, k: int, preset: Preset = DPL
) -> list[Retrieved]:
    """The top ``k`` entries by BM25 score.

    Under ``dpl`` ties go to the more recent review; under ``paper`` the order is
    rank-bm25's ``get_top_n`` over the entries in the order given (oldest first).
    ``entries`` must already exclude the target review and anything hidden."""
    if not entries or k <= 0:
        return []
    documents = [document(e, preset) for e in entries]
    q = query(target, preset)
    if preset.bm25 == "okapi-whitespace":
        order, scores = okapi_order(documents, q)
    else:
        scores = _bm25s_scores(documents, q)
        order = sorted(
            range(len(entries)),
            key=lambda i: (-scores[i], -entries[i].review.timestamp, entries[i].item.id),
        )
    return [
        Retrieved(entry=entries[i], score=scores[i], rank=r)
        for r, i in enumerate(order[:k], start=1)
    ]
