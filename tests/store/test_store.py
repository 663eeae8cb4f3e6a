"""The store API on small hand-made data: counts, ordering, search, caches, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from user_store import ArtifactKey, Item, Review, UserStore
from user_store import migrations as migrations_module
from user_store.errors import DatabaseError, StoreError, UnknownItemError, UnknownUserError


def review(
    user: str, item: str, ts: int, rating: float = 4.0, text: str = "fine", title: str = "t"
):
    return Review(user, item, rating, title, text, ts, source="test")


@pytest.fixture
def store(tmp_path: Path):
    with UserStore(tmp_path / "store.db") as s:
        yield s


@pytest.fixture
def shop(store: UserStore) -> UserStore:
    """Five users; item 'popular' reviewed by all, 'pair' by two, 'solo' by one."""
    rows = [review(f"u{n}", "popular", 1_000 + n, rating=float(n)) for n in range(1, 6)]
    rows += [
        review("u1", "pair", 2_000, text="warm mellow tone from the tube amp"),
        review("u2", "pair", 2_001, text="bright strings"),
        review("u1", "solo", 500, text="a capo that slips"),
    ]
    store.upsert_reviews(rows)
    store.upsert_items(
        [
            Item("popular", "Tube Amplifier", "A small valve amp for practice."),
            Item("pair", "Guitar Strings", "Nickel wound, light gauge.", ("Strings", "Guitar")),
        ]
    )
    return store


def test_upsert_counts_follow_the_latest_review(store: UserStore) -> None:
    assert store.upsert_reviews([review("u", "i", 100, text="first")]) == (1, 0, 0)
    # The same review again changes nothing; an older one neither.
    assert store.upsert_reviews([review("u", "i", 100, text="first")]) == (0, 0, 1)
    assert store.upsert_reviews([review("u", "i", 50, text="older")]) == (0, 0, 1)
    assert store.review("u", "i").text == "first"
    # A newer one replaces it; at an equal timestamp a different review wins too (later line).
    assert store.upsert_reviews([review("u", "i", 200, text="newer")]) == (0, 1, 0)
    assert store.upsert_reviews([review("u", "i", 200, text="tie, later line")]) == (0, 1, 0)
    assert store.review("u", "i").text == "tie, later line"
    # Within one batch each review counts as if applied in order.
    batch = [review("v", "i", 10), review("v", "i", 30, text="b"), review("v", "i", 20)]
    assert store.upsert_reviews(batch) == (1, 1, 1)
    assert store.review("v", "i").timestamp == 30
    assert store.stats().reviews == 2


def test_search_index_follows_updates(store: UserStore) -> None:
    store.upsert_reviews([review("u", "i", 1, text="zebrawood fretboard")])
    store.upsert_reviews([review("u", "i", 2, text="rosewood fretboard")])
    assert store.users(search="zebrawood") == []
    assert [u.user_id for u in store.users(search="rosewood")] == ["u"]
    # Inserted and replaced inside one batch: indexed once, with the final text.
    store.upsert_reviews(
        [review("w", "i", 1, text="maple neck"), review("w", "i", 2, text="ebony")]
    )
    assert [u.user_id for u in store.users(search="ebony")] == ["w"]
    assert store.users(search="maple") == []
    # Raises sqlite3.DatabaseError if the index and the reviews disagree (rank 1: checked
    # against the content table, not only for the index's own structure).
    store.conn.execute("INSERT INTO reviews_fts(reviews_fts, rank) VALUES('integrity-check', 1)")


def test_history_is_oldest_first_with_items(shop: UserStore) -> None:
    history = shop.user_history("u1")
    assert [e.item.id for e in history.entries] == ["solo", "popular", "pair"]
    assert history.latest.review.item_id == "pair"
    assert history.entries[2].item.title == "Guitar Strings"
    assert history.entries[2].item.categories == ("Strings", "Guitar")
    solo = history.entries[0].item
    assert (solo.title, solo.metadata_missing) == ("solo", True)
    with pytest.raises(UnknownUserError, match="nobody"):
        shop.user_history("nobody")


def test_item_and_other_reviewers(shop: UserStore) -> None:
    assert shop.item("popular").description == "A small valve amp for practice."
    assert not shop.item("popular").metadata_missing
    with pytest.raises(UnknownItemError):
        shop.item("missing")
    others = shop.reviews_of_item("popular", exclude_user="u3")
    assert [r.user_id for r in others] == ["u1", "u2", "u4", "u5"]
    assert len(shop.reviews_of_item("popular")) == 5
    assert shop.reviewer_counts(["popular", "pair", "nothing"]) == {"popular": 5, "pair": 2}
    assert shop.review("u9", "popular") is None


def test_users_counts_orders_and_search(shop: UserStore) -> None:
    by_reviews = shop.users(m=4)
    assert [u.user_id for u in by_reviews][:2] == ["u1", "u2"]
    u1 = by_reviews[0]
    assert (u1.review_count, u1.comparable_items) == (3, 1)  # only 'popular' has 4 others
    assert u1.avg_rating == pytest.approx((1 + 4 + 4) / 3)
    assert shop.users(m=1)[0].comparable_items == 2  # 'pair' has one other reviewer
    assert [u.user_id for u in shop.users(order_by="rating")][0] == "u5"
    assert [u.user_id for u in shop.users(order_by="id")] == ["u1", "u2", "u3", "u4", "u5"]
    assert [u.user_id for u in shop.users(min_reviews=2)] == ["u1", "u2"]
    assert len(shop.users(limit=2)) == 2
    # Prefix of the user id, words of their reviews, words of their items' metadata.
    assert [u.user_id for u in shop.users(search="u3")] == ["u3"]
    assert [u.user_id for u in shop.users(search="mellow tube")] == ["u1"]
    assert {u.user_id for u in shop.users(search="nickel")} == {"u1", "u2"}
    assert shop.users(search='"[bold] AND (') == []  # typed punctuation is not FTS syntax
    with pytest.raises(StoreError, match="unknown|Unknown"):
        shop.users(order_by="shoe size")


def test_item_search_and_unreviewed_items(shop: UserStore) -> None:
    assert [i.id for i in shop.search_items("valve")] == ["popular"]
    assert [i.id for i in shop.search_items("guit")] == ["pair"]  # prefix of the last word
    assert shop.search_items("   ") == []
    assert [i.id for i in shop.items_not_reviewed_by("u3")] == ["pair", "solo"]
    assert [i.id for i in shop.items_not_reviewed_by("u3", query="nickel")] == ["pair"]
    assert [i.id for i in shop.items_not_reviewed_by("u3", query="so")] == ["solo"]


def test_embeddings_round_trip_as_float32(store: UserStore) -> None:
    a = np.array([0.1, -2.5, 3.0], dtype=np.float64)
    store.put_embeddings({("u", "i"): a, ("v", "i"): np.ones(3)}, "mini")
    got = store.get_embeddings([("u", "i"), ("v", "i"), ("x", "i")], "mini")
    assert set(got) == {("u", "i"), ("v", "i")}
    assert got[("u", "i")].dtype == np.float32
    np.testing.assert_array_equal(got[("u", "i")], a.astype(np.float32))
    assert store.get_embeddings([("u", "i")], "other-model") == {}
    blob = store.conn.execute("SELECT vector FROM embeddings WHERE user_id = 'u'").fetchone()[0]
    assert blob == np.array([0.1, -2.5, 3.0], dtype="<f4").tobytes()
    store.put_embeddings({("u", "i"): np.zeros(3)}, "mini")
    assert not store.get_embeddings([("u", "i")], "mini")[("u", "i")].any()
    assert store.stats().cached["embeddings"] == 2
    many = {(f"u{n}", "i"): np.full(4, n) for n in range(1200)}  # more than one query chunk
    store.put_embeddings(many, "big")
    assert len(store.get_embeddings(list(many), "big")) == 1200


def test_a_changed_review_text_drops_its_cached_vectors(store: UserStore) -> None:
    store.upsert_reviews([review("u", "i", 100, text="old words"), review("v", "i", 100)])
    store.put_embeddings({("u", "i"): np.ones(3), ("v", "i"): np.ones(3)}, "mini")
    # The same review again, or a newer one with only a new title, keeps the vector.
    store.upsert_reviews([review("u", "i", 100, text="old words")])
    store.upsert_reviews([review("u", "i", 150, text="old words", title="new title")])
    assert set(store.get_embeddings([("u", "i"), ("v", "i")], "mini")) == {("u", "i"), ("v", "i")}
    # New text: the old vector would describe the old words, so it goes; others stay.
    store.upsert_reviews([review("u", "i", 200, text="new words")])
    assert set(store.get_embeddings([("u", "i"), ("v", "i")], "mini")) == {("v", "i")}
    with store.conn:
        store.conn.execute("DELETE FROM reviews WHERE user_id = 'v'")
    assert store.get_embeddings([("v", "i")], "mini") == {}


def test_artifacts_are_keyed_by_canonical_params(store: UserStore) -> None:
    key = ArtifactKey("u", "i1,i2", "smollm", "v1", {"k": 8, "m": 4, "seed": 0})
    same = ArtifactKey("u", "i1,i2", "smollm", "v1", {"seed": 0, "m": 4, "k": 8})
    other = ArtifactKey("u", "i1,i2", "smollm", "v2", {"k": 8, "m": 4, "seed": 0})
    assert key.params_hash == same.params_hash
    assert store.get_artifact("profile", key) is None
    store.put_artifact("profile", key, {"text": "likes tone", "n": [1, 2]})
    assert store.get_artifact("profile", same) == {"text": "likes tone", "n": [1, 2]}
    assert store.get_artifact("profile", other) is None
    assert store.get_artifact("differences", key) is None
    store.put_artifact("profile", same, {"text": "replaced"})
    assert store.get_artifact("profile", key) == {"text": "replaced"}
    store.put_artifact("differences", key, ["a"])
    store.put_artifact("profile", ArtifactKey("w", "i", "", "", {}), "x")
    assert store.stats().cached["profile"] == 2
    assert store.clear_artifacts(user_id="u", kind="profile") == 1
    assert store.clear_artifacts(user_id="u") == 1
    assert store.clear_artifacts() == 1


def test_generations(store: UserStore) -> None:
    first = store.add_generation(
        user_id="u",
        item_id="i",
        method="dpl",
        model_id="smollm",
        prompt_version="v1",
        params={"k": 8},
        text="Great strings.",
        stats={"tokens": 5},
    )
    store.add_generation(
        user_id="u",
        item_id="j",
        method="rag",
        model_id="smollm",
        prompt_version="v1",
        params={},
        text="Fine.",
        stats={},
    )
    gens = store.generations("u")
    assert [g.id for g in gens][0] == first and len(gens) == 2
    only = store.generations("u", "i")
    assert [(g.method, g.text, g.params, g.stats) for g in only] == [
        ("dpl", "Great strings.", {"k": 8}, {"tokens": 5})
    ]
    assert store.stats().cached["generations"] == 2


def test_open_sets_wal_and_migrates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.db"
    UserStore(path).close()
    calls: list[int] = []

    def m999_extra_table(db) -> None:
        calls.append(1)
        db.conn.execute("CREATE TABLE extra (x INTEGER)")

    monkeypatch.setattr(
        migrations_module, "MIGRATIONS", [*migrations_module.MIGRATIONS, m999_extra_table]
    )
    for _ in range(2):
        with UserStore(path) as s:
            assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert calls == [1]
    names = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM _migrations")]
    assert names[0] == "m001_initial"
    assert names == [m.__name__ for m in migrations_module.MIGRATIONS]
    assert names[-1] == "m999_extra_table"


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(DatabaseError, match="notes.db"):
        UserStore(bad)
    with pytest.raises(DatabaseError, match="folder"):
        UserStore(tmp_path)


def test_nothing_is_created_until_opened(tmp_path: Path) -> None:
    import user_store  # noqa: F401 - importing must not create the data folder
    from user_store import locations

    assert not locations.data_dir().exists()
