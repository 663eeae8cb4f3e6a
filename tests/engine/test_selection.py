"""KMeans selection on vectors laid out by hand, so the right answer is known."""

from __future__ import annotations

import warnings

import numpy as np

from dpl_engine.method.selection import paper_representatives, representatives

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


# -- the published code's rule ----------------------------------------------------------
def test_paper_rule_picks_each_clusters_nearest_and_skips_the_users_cluster():
    reviews, vectors = vecs(
        {
            "me": [0, 0],
            "twin": [0.1, 0],
            "a1": [10, 0],
            "a2": [10.2, 0],
            "a3": [9.9, 0],  # centre 10.033: a1 (0.033) is nearest
            "b1": [0, 10],
            "b2": [0, 10.1],
            "c1": [-10, 0],
            "d1": [0, -10],
        }
    )
    others = [reviews[u] for u in reviews if u != "me"]
    chosen = paper_representatives(reviews["me"], others, vectors, n=4, random_state=42)
    assert {c.user_id for c in chosen} == {"a1", "b1", "c1", "d1"}
    assert [c.cluster for c in chosen] == sorted(c.cluster for c in chosen)


def test_paper_rule_reads_the_reviewers_in_user_id_order():
    # b1 and b2 sit exactly as far from their centre; the first row, the lower id, stands
    # for the cluster whatever order the reviews arrive in.
    reviews, vectors = vecs(
        {"me": [0, 0], "b2": [0, 10.5], "b1": [0, 9.5], "a1": [10, 0], "a2": [10, 0.5]}
    )
    given = [reviews["b2"], reviews["a2"], reviews["b1"], reviews["a1"]]
    forward = paper_representatives(reviews["me"], given, vectors, n=2, random_state=42)
    backward = paper_representatives(reviews["me"], given[::-1], vectors, n=2, random_state=42)
    assert forward == backward
    assert {c.user_id for c in forward} == {"a1", "b1"}


def _paper_pick_in_b(shift: float) -> set[str]:
    """The paper rule's choices where b1 is ``shift`` farther left than b2's mirror image, so
    b2 is nearer the b cluster's centre by about a third of ``shift``."""
    reviews, vectors = vecs(
        {
            "me": [0, -5],
            "a1": [10, 0],
            "a2": [10, 0.5],
            "b1": [-0.1 - shift, 1],
            "b2": [0.1, 1],
            "b3": [0, 1.3],
        }
    )
    others = [reviews[u] for u in ("a1", "a2", "b1", "b2", "b3")]
    chosen = paper_representatives(reviews["me"], others, vectors, n=2, random_state=42)
    return {c.user_id for c in chosen}


def test_paper_rule_breaks_a_rounding_tie_by_user_id():
    # A gap of ~5e-7, the size of the float32 rounding that differs between CPUs, is a tie:
    # the lower id stands for the cluster on every machine.
    assert _paper_pick_in_b(2e-6) == {"a1", "b1"}
    # A real gap still decides by distance.
    assert _paper_pick_in_b(2e-2) == {"a1", "b2"}


def test_paper_rule_with_fewer_reviews_than_clusters_takes_everyone_else():
    reviews, vectors = vecs({"me": [1, 0], "x": [0, 1], "y": [-1, 0]})
    chosen = paper_representatives(
        reviews["me"], [reviews["y"], reviews["x"]], vectors, n=4, random_state=42
    )
    assert [c.user_id for c in chosen] == ["x", "y"] and all(c.distance == 0 for c in chosen)


def test_paper_rule_leaves_empty_clusters_out_without_a_warning():
    reviews, vectors = vecs({"me": [1, 0], "x": [1, 0], "y": [1, 0], "z": [0, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = paper_representatives(
            reviews["me"], [reviews[u] for u in "xyz"], vectors, n=4, random_state=42
        )
    assert [c.user_id for c in chosen] == ["z"]
