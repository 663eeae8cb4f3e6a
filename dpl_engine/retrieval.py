"""Finding the user's past reviews that matter for the target item (BM25).

Only the user's own history is indexed, so scores say how relevant a past
review is compared with the user's other reviews, not with the whole corpus.
A document is the past review's title plus its item's description (the item
title where there is none); the query is the target review title plus the
target item's description or title.
"""

from __future__ import annotations

from collections.abc import Sequence

from user_store import HistoryEntry

from .types import Retrieved, Target


def document(entry: HistoryEntry) -> str:
    return f"{entry.review.title}\n{entry.item.search_text}"


def query(target: Target) -> str:
    return f"{target.title}\n{target.item.search_text}"


def _tokens(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def rank(entries: Sequence[HistoryEntry], target: Target, k: int) -> list[Retrieved]:
    """The top ``k`` entries by BM25 score; ties go to the more recent review.

    ``entries`` must already exclude the target review and anything hidden."""
    if not entries or k <= 0:
        return []
    import bm25s

    corpus = _tokens([document(e) for e in entries])
    retriever = bm25s.BM25()
    # bm25s rejects a corpus with no tokens at all; every document then scores 0.
    if any(corpus):
        retriever.index(corpus, show_progress=False)
        q = _tokens([query(target)])[0]
        scores = [float(s) for s in retriever.get_scores(q)] if q else [0.0] * len(entries)
    else:
        scores = [0.0] * len(entries)
    order = sorted(
        range(len(entries)),
        key=lambda i: (-scores[i], -entries[i].review.timestamp, entries[i].item.id),
    )
    return [
        Retrieved(entry=entries[i], score=scores[i], rank=r)
        for r, i in enumerate(order[:k], start=1)
    ]
