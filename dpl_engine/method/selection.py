"""Choosing the representative comparison users for an item (KMeans over review embeddings).

A user's style only shows against others who reviewed the same thing. The
user's review and every other review of the item are embedded and clustered
into n + 1 groups; the group that holds the user's review is dropped (those
reviewers write like the user), and from each other group the review nearest
its centre stands for that way of reviewing the item.

Two rules do this. dpl's (``representatives``) takes the reviews oldest first,
clusters in float64 with 10 restarts and never asks for more clusters than
there are distinct points. The published code's (``paper_representatives``)
takes the other reviewers sorted by user id, clusters the float32 vectors with
scikit-learn's default restarts and always asks for n + 1 clusters. With
k-means++ seeding a single start depends on the order of the rows, so only the
second rule gives the published choices; dpl's restarts make its own rule far
less sensitive to order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models import Embedder
from user_store import Review, UserStore

from ..types import ComparisonUser

N_INIT = 10
"""KMeans restarts under the ``dpl`` preset; fixed so that a seed alone decides the clustering."""

PAPER_RULE = "paper-v2"
"""Names ``paper_representatives``'s rule in cache keys; sets chosen by an earlier paper
preset (dpl's rule with the paper's restarts) are then never read back as this rule's."""


TIE_TOLERANCE = 1e-6
"""Distances to a centre closer than this count as equal (the vectors have unit length)."""


def review_key(review: Review) -> tuple[str, str]:
    return (review.user_id, review.item_id)


def embed_reviews(
    store: UserStore, embedder: Embedder, reviews: Sequence[Review], *, model_id: str | None = None
) -> tuple[dict[tuple[str, str], np.ndarray], int]:
    """Vectors for ``reviews``, from the store's cache where present; the rest are embedded
    once and cached. Returns the vectors and how many were newly embedded."""
    model_id = model_id or embedder.model_id
    keys = [review_key(r) for r in reviews]
    vectors = dict(store.get_embeddings(keys, model_id))
    missing = [r for r in reviews if review_key(r) not in vectors]
    if missing:
        fresh = embedder.embed([r.text for r in missing])
        new = {
            review_key(r): np.asarray(v, dtype=np.float32)
            for r, v in zip(missing, fresh, strict=True)
        }
        store.put_embeddings(new, model_id)
        vectors.update(new)
    return vectors, len(missing)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na and nb else 0.0


def representatives(
    user_review: Review,
    others: Sequence[Review],
    vectors: dict[tuple[str, str], np.ndarray],
    *,
    n: int,
    seed: int,
    n_init: int | None = N_INIT,
) -> tuple[ComparisonUser, ...]:
    """Up to ``n`` representative reviews among ``others``, ordered by cluster.

    Clusters: min(n + 1, distinct points); with fewer reviewers than that every
    reviewer outside the user's cluster is taken. Deterministic for a seed.
    ``n_init=None`` leaves the number of restarts to scikit-learn's default."""
    if not others or n <= 0:
        return ()
    from sklearn.cluster import KMeans

    points = np.vstack(
        [vectors[review_key(user_review)]] + [vectors[review_key(r)] for r in others]
    ).astype(np.float64)
    distinct = len(np.unique(np.round(points, 6), axis=0))
    k = min(n + 1, distinct)
    if k < 2:
        return ()
    restarts = {} if n_init is None else {"n_init": n_init}
    model = KMeans(n_clusters=k, random_state=seed, **restarts).fit(points)
    labels, centres = model.labels_, model.cluster_centers_
    own = int(labels[0])
    chosen: list[ComparisonUser] = []
    for cluster in sorted(set(int(c) for c in labels) - {own}):
        members = [i for i in range(1, len(points)) if labels[i] == cluster]
        dists = {i: float(np.linalg.norm(points[i] - centres[cluster])) for i in members}
        # In a two-member cluster both sit exactly as far from the centre: the lower id wins.
        best = min(members, key=lambda i: (round(dists[i], 9), others[i - 1].user_id))
        review = others[best - 1]
        chosen.append(
            ComparisonUser(
                user_id=review.user_id,
                cluster=cluster,
                distance=dists[best],
                similarity=_cosine(points[best], points[0]),
                rating=float(review.rating),
                review=review,
            )
        )
    return tuple(chosen[:n])


def paper_representatives(
    user_review: Review,
    others: Sequence[Review],
    vectors: dict[tuple[str, str], np.ndarray],
    *,
    n: int,
    random_state: int,
) -> tuple[ComparisonUser, ...]:
    """Up to ``n`` representative reviews among ``others``, chosen as the published code does.

    The rows are the user's review and then the others sorted by user id, as float32;
    KMeans asks for n + 1 clusters (fewer only when there are fewer rows, which the paper's
    m = n = 4 never allows) with scikit-learn's default restarts. The
    user's cluster is dropped, and each other non-empty cluster, in cluster-number order,
    gives its member nearest the centre (float32 Euclidean distance; on a tie, within
    ``TIE_TOLERANCE``, the first in row order, so the lower user id)."""
    if not others or n <= 0:
        return ()
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    ordered = sorted(others, key=lambda r: r.user_id)
    points = np.vstack(
        [vectors[review_key(user_review)]] + [vectors[review_key(r)] for r in ordered]
    ).astype(np.float32, copy=False)
    k = min(n + 1, len(points))
    if k < 2:
        return ()
    with warnings.catch_warnings():
        # Identical reviews leave fewer distinct points than clusters; the empty clusters
        # are skipped below, as the published code skips them.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = KMeans(n_clusters=k, random_state=random_state).fit(points)
    labels, centres = model.labels_, model.cluster_centers_
    own = int(labels[0])
    chosen: list[ComparisonUser] = []
    for cluster in range(k):
        members = [i for i in range(1, len(points)) if int(labels[i]) == cluster]
        if cluster == own or not members:
            continue
        dists = [float(np.linalg.norm(points[i] - centres[cluster])) for i in members]
        # The two members of a two-member cluster are equally far from its centre, but float32
        # rounding (which differs between CPUs) separates them by ~1e-7: within TIE_TOLERANCE
        # the first in row order wins, so every machine picks the same reviewer.
        nearest = min(dists)
        best = next(i for i, d in zip(members, dists, strict=True) if d <= nearest + TIE_TOLERANCE)
        review = ordered[best - 1]
        chosen.append(
            ComparisonUser(
                user_id=review.user_id,
                cluster=cluster,
                distance=nearest,
                similarity=_cosine(points[best], points[0]),
                rating=float(review.rating),
                review=review,
            )
        )
    return tuple(chosen[:n])
