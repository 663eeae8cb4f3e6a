"""Importing the real dev data: exact counts, idempotence, the 2014 layout, crashes, readers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from user_store import UserStore, locations
from user_store.ingest import ingest_files, ingest_sample

REPO = Path(__file__).resolve().parents[2]
REVIEW_COLUMNS = "user_id, item_id, rating, title, text, timestamp, helpful_votes"


def _counts(path: Path) -> tuple[int, int, int]:
    with UserStore(path) as store:
        s = store.stats()
    return s.reviews, s.users, s.items


def test_mi5_imports_exactly(tmp_path: Path, mi5: Path) -> None:
    with UserStore(tmp_path / "a.db") as store:
        report = ingest_files(store, [mi5 / "reviews.jsonl.gz"], [mi5 / "meta.jsonl.gz"])
        meta, reviews = report.files
        assert (meta.kind, meta.read, meta.inserted, meta.rejected) == ("meta", 900, 900, 0)
        assert reviews.format == "amazon2023"
        assert (reviews.read, reviews.inserted, reviews.updated, reviews.duplicates) == (
            10_261,
            10_261,
            0,
            0,
        )
        assert reviews.rejected == 0 and report.rejects_path is None
        stats = store.stats()
        assert (stats.reviews, stats.users, stats.items) == (10_261, 1_429, 900)
        # The source has no product metadata: its placeholder file says so, and we keep that.
        assert stats.items_missing_metadata == 900
        # Empty review texts are valid records.
        empty = store.conn.execute("SELECT count(*) FROM reviews WHERE text = ''").fetchone()[0]
        assert empty == 7
        first = store.review("A2IBPI20UZIR0U", "1384719342")
        assert (first.rating, first.title, first.timestamp) == (5.0, "good", 1_393_545_600_000)
        assert first.text.startswith("Not much to write about here")
        runs = store.import_runs()
        assert [(r.read, r.inserted, r.finished_at is not None) for r in runs] == [
            (900, 900, True),
            (10_261, 10_261, True),
        ]


def test_reimport_changes_nothing(tmp_path: Path, mi5: Path) -> None:
    with UserStore(tmp_path / "a.db") as store:
        ingest_files(store, [mi5 / "reviews.jsonl.gz"], [mi5 / "meta.jsonl.gz"])
        before = store.conn.execute(
            f"SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY 1, 2"
        ).fetchall()
        again = ingest_files(store, [mi5 / "reviews.jsonl.gz"], [mi5 / "meta.jsonl.gz"])
        assert [(f.inserted, f.updated, f.duplicates) for f in again.files] == [
            (0, 0, 900),
            (0, 0, 10_261),
        ]
        after = store.conn.execute(f"SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY 1, 2").fetchall()
        assert after == before
    assert _counts(tmp_path / "a.db") == (10_261, 1_429, 900)


def test_2014_source_gives_the_same_store(tmp_path: Path, mi5: Path, mi5_db: Path) -> None:
    with UserStore(tmp_path / "b.db") as store:
        report = ingest_files(store, [mi5 / "source" / "reviews_Musical_Instruments_5.json.gz"])
        assert report.files[0].format == "amazon2014"
        assert report.files[0].inserted == 10_261
        from_2014 = store.conn.execute(
            f"SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY 1, 2"
        ).fetchall()
        users_2014 = store.conn.execute("SELECT id FROM users ORDER BY id").fetchall()
        items_2014 = store.conn.execute("SELECT id FROM items ORDER BY id").fetchall()
    with UserStore(mi5_db) as ref:
        from_2023 = ref.conn.execute(
            f"SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY 1, 2"
        ).fetchall()
        assert users_2014 == ref.conn.execute("SELECT id FROM users ORDER BY id").fetchall()
        assert items_2014 == ref.conn.execute("SELECT id FROM items ORDER BY id").fetchall()
    assert len(from_2014) == 10_261
    assert from_2014 == from_2023


def test_bundled_sample_is_dense(tmp_path: Path) -> None:
    with UserStore(tmp_path / "s.db") as store:
        report = ingest_sample(store)
        assert report.files[0].inserted == report.files[0].read > 1000
        again = ingest_sample(store)
        assert again.files[0].duplicates == report.files[0].read
        users = store.users(m=4)
        assert len(users) == 203
        # Every sample user has items at least 4 other sample users reviewed.
        assert all(u.comparable_items >= 4 for u in users)
    sample = locations.sample_dir()
    assert (sample / "PROVENANCE.md").read_text().count("McAuley") >= 2
    assert (sample / "reviews.jsonl.gz").stat().st_size < 1_000_000


_SLOW_IMPORT = textwrap.dedent(
    """
    import sys, time
    from user_store import UserStore, ingest, writer

    ingest.BATCH = int(sys.argv[3])
    mode = sys.argv[4]
    real_write = ingest.write_review_rows
    calls = 0

    def write(conn, rows):
        global calls
        calls += 1
        result = real_write(conn, rows)
        if mode == "in-transaction" and calls == 3:
            print("IN_TRANSACTION", flush=True)  # rows written, not committed
            time.sleep(60)
        return result

    def progress(event):
        if mode == "between-batches" and event.read >= 2 * ingest.BATCH:
            print("COMMITTED", flush=True)
            time.sleep(60)
        elif mode == "slow":
            time.sleep(0.02)

    ingest.write_review_rows = write
    store = UserStore(sys.argv[1])
    ingest.ingest_files(store, [sys.argv[2]], progress=progress)
    print("DONE", flush=True)
    """
)


def _start_import(db: Path, source: Path, batch: int, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_IMPORT, str(db), str(source), str(batch), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("mode", ["between-batches", "in-transaction"])
def test_killed_import_leaves_a_consistent_database(tmp_path: Path, mi5: Path, mode: str) -> None:
    db = tmp_path / "killed.db"
    proc = _start_import(db, mi5 / "reviews.jsonl.gz", 1000, mode)
    try:
        line = proc.stdout.readline().strip()
        assert line in ("COMMITTED", "IN_TRANSACTION")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # FTS5's check against the content table (rank 1; without it an external-content index
    # is only checked for its own structure) raises sqlite3.DatabaseError on any review the
    # index misses or holds in excess.
    conn.execute("INSERT INTO reviews_fts(reviews_fts, rank) VALUES('integrity-check', 1)")
    kept = conn.execute("SELECT count(*) FROM reviews").fetchone()[0]
    assert kept == 2000  # the committed batches, and nothing of the one in flight
    run = conn.execute("SELECT status, finished_at, inserted FROM import_runs").fetchone()
    assert run == ("running", None, 2000)
    conn.close()
    with UserStore(db) as store:
        rerun = ingest_files(store, [mi5 / "reviews.jsonl.gz"]).files[0]
        assert (rerun.inserted, rerun.duplicates) == (10_261 - 2000, 2000)
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _counts(db) == (10_261, 1_429, 900)


def test_reader_sees_consistent_snapshots_during_import(tmp_path: Path, mi5: Path) -> None:
    db = tmp_path / "busy.db"
    UserStore(db).close()
    proc = _start_import(db, mi5 / "reviews.jsonl.gz", 250, "slow")
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            with UserStore(db) as reader:
                with reader.conn:  # one read transaction: one snapshot
                    reader.conn.execute("BEGIN")
                    n = reader.conn.execute("SELECT count(*) FROM reviews").fetchone()[0]
                    per_user = sum(u.review_count for u in reader.users())
                    users = reader.conn.execute("SELECT count(*) FROM users").fetchone()[0]
                    fts = reader.conn.execute("SELECT count(*) FROM reviews_fts_docsize")
                    assert per_user == n == fts.fetchone()[0]
                    assert users >= len(reader.users())
                assert n % 250 == 0 or n == 10_261  # whole batches only
                seen.append(n)
            time.sleep(0.05)
        assert proc.wait(timeout=120) == 0
        assert proc.stdout.read().strip() == "DONE"
    finally:
        proc.kill()
    assert any(0 < n < 10_261 for n in seen), "the reader never saw the import in progress"
    assert seen == sorted(seen)
    assert _counts(db) == (10_261, 1_429, 900)
