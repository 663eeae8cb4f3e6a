"""The shared mi5 database fixture holds the whole dev set."""

from user_store import UserStore


def test_mi5_db_holds_the_dev_set(mi5_db):
    with UserStore(mi5_db) as store:
        stats = store.stats()
    assert (stats.reviews, stats.users, stats.items) == (10_261, 1_429, 900)
