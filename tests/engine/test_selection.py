"""KMeans selection on vectors laid out by hand, so the right answer is known."""

from __future__ import annotations

import numpy as np

from dpl_engine.selection import representatives

from .fakes import review


def vecs(points: dict[str, list[float]]) -> tuple[list, dict]:
    reviews = {u: review(u, "item", f"text of {u}") for u in points}
    vectors = {(u, "item"): np.array(p, dtype=np.float32) for u, p in points.items()}
    return reviews, vectors


def test_picks_the_review_nearest_each_centre_and_skips_the_users_cluster():
    reviews, vectors = vecs(
        {
            "me": [0, 0],
            "twin": [0.1, 0],  # the user's cluster
            "a1": [10, 0],
            "a2": [10.2, 0],
            "a3": [9.9, 0],  # centre near 10.03: a3 (0.13) < a2
            "b1": [0, 10],
            "b2": [0, 10.1],
        }
    )
    others = [reviews[u] for u in reviews if u != "me"]
    chosen = representatives(reviews["me"], others, vectors, n=2, seed=3)
    ids = {c.user_id for c in chosen}
    assert "twin" not in ids and len(chosen) == 2
    assert ids == {"a1", "b1"}  # b1 and b2 tie at 0.05 from their centre: the lower id wins
    a = next(c for c in chosen if c.user_id.startswith("a"))
    assert a.user_id == "a1"  # 0.033 from the centre, nearer than a3 (0.133) and a2 (0.167)
    assert a.similarity == 0.0 and a.distance < 0.05 and a.rating == 4.0


def test_fewer_reviewers_than_clusters_takes_everyone_outside_the_users_cluster():
    reviews, vectors = vecs({"me": [1, 0], "x": [0, 1], "y": [-1, 0]})
    chosen = representatives(reviews["me"], [reviews["x"], reviews["y"]], vectors, n=4, seed=0)
    assert sorted(c.user_id for c in chosen) == ["x", "y"]
    assert all(c.distance == 0 for c in chosen)


def test_identical_reviews_collapse_without_error():
    reviews, vectors = vecs({"me": [1, 0], "x": [1, 0], "y": [1, 0]})
    assert representatives(reviews["me"], [reviews["x"], reviews["y"]], vectors, n=4, seed=0) == ()


def test_same_seed_same_choice():
    rng = np.random.default_rng(0)
    points = {f"u{i}": list(rng.normal(size=8)) for i in range(30)}
    reviews, vectors = vecs(points)
    others = [reviews[u] for u in reviews if u != "u0"]
    a = representatives(reviews["u0"], others, vectors, n=4, seed=7)
    b = representatives(reviews["u0"], others, vectors, n=4, seed=7)
    assert a == b and len(a) == 4
