"""Schema changes, in order.

Each migration is a function named ``mNNN_what_it_does`` registered with
``@migration``; ``apply`` runs the ones a database has not seen yet, each in
its own transaction together with its record in ``_migrations``. To change
the schema, append a new function at the end: never edit one that has shipped.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next schema step (its name is what gets recorded)."""
    if any(m.__name__ == fn.__name__ for m in MIGRATIONS):
        raise ValueError(f"migration {fn.__name__!r} is registered twice")
    MIGRATIONS.append(fn)
    return fn


def applied(db: sqlite_utils.Database) -> list[str]:
    if not db["_migrations"].exists():
        return []
    return [row[0] for row in db.conn.execute("SELECT name FROM _migrations ORDER BY id")]


def pending(db: sqlite_utils.Database) -> list[Migration]:
    done = set(applied(db))
    return [m for m in MIGRATIONS if m.__name__ not in done]


def apply(db: sqlite_utils.Database) -> list[str]:
    """Bring ``db`` to the current schema; returns the names of the migrations it ran."""
    ran: list[str] = []
    if not pending(db):
        return ran
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
    )
    conn.commit()
    for fn in MIGRATIONS:
        # Taking the write lock first makes two processes opening a fresh database
        # at once run each migration exactly once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
            if fn.__name__ in done:
                conn.execute("ROLLBACK")
                continue
            fn(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        ran.append(fn.__name__)
    return ran


def _script(db: sqlite_utils.Database, sql: str) -> None:
    """Run several statements inside the caller's transaction (executescript would commit)."""
    pending_sql = ""
    for piece in sql.split(";"):
        pending_sql += piece + ";"
        if sqlite3.complete_statement(pending_sql):
            if pending_sql.strip(" \n;"):
                db.conn.execute(pending_sql)
            pending_sql = ""
    if pending_sql.strip(" \n;"):
        db.conn.execute(pending_sql)


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
CREATE TABLE users (
    id TEXT PRIMARY KEY
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,               -- parent_asin
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '[]',  -- JSON list of strings
    raw TEXT,                          -- the metadata record as imported (JSON)
    metadata_missing INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE reviews (
    user_id TEXT NOT NULL REFERENCES users(id),
    item_id TEXT NOT NULL REFERENCES items(id),
    rating REAL NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    timestamp INTEGER NOT NULL,        -- milliseconds since the epoch, UTC
    helpful_votes INTEGER NOT NULL DEFAULT 0,
    verified INTEGER,                  -- NULL when the source does not say
    source TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, item_id)
);
CREATE INDEX reviews_item ON reviews(item_id);
CREATE INDEX reviews_user_time ON reviews(user_id, timestamp);
CREATE TABLE import_runs (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    kind TEXT NOT NULL,                -- 'reviews' or 'meta'
    format TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',  -- running, done, stopped, failed
    read INTEGER NOT NULL DEFAULT 0,
    inserted INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE VIRTUAL TABLE items_fts USING fts5(
    title, description, content='items', content_rowid='rowid'
);
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, title, description)
    VALUES (new.rowid, new.title, new.description);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF title, description ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
    INSERT INTO items_fts(rowid, title, description)
    VALUES (new.rowid, new.title, new.description);
END;
CREATE VIRTUAL TABLE reviews_fts USING fts5(
    title, text, content='reviews', content_rowid='rowid', detail=none
);
-- New reviews are indexed in bulk by writer.write_review_rows (several times faster
-- than a per-row trigger); updates and deletes of indexed rows keep it in step here.
CREATE TRIGGER reviews_fts_delete AFTER DELETE ON reviews
WHEN EXISTS (SELECT 1 FROM reviews_fts_docsize WHERE id = old.rowid) BEGIN
    INSERT INTO reviews_fts(reviews_fts, rowid, title, text)
    VALUES ('delete', old.rowid, old.title, old.text);
END;
CREATE TRIGGER reviews_fts_update AFTER UPDATE OF title, text ON reviews
WHEN EXISTS (SELECT 1 FROM reviews_fts_docsize WHERE id = old.rowid) BEGIN
    INSERT INTO reviews_fts(reviews_fts, rowid, title, text)
    VALUES ('delete', old.rowid, old.title, old.text);
    INSERT INTO reviews_fts(rowid, title, text) VALUES (new.rowid, new.title, new.text);
END;
CREATE TABLE embeddings (
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,              -- little-endian float32
    PRIMARY KEY (user_id, item_id, model_id)
) WITHOUT ROWID;
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    item_key TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    params TEXT NOT NULL,              -- canonical JSON of the parameters
    value TEXT NOT NULL,               -- JSON
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX artifacts_key
    ON artifacts(kind, user_id, item_key, model_id, prompt_version, params_hash);
CREATE INDEX artifacts_user ON artifacts(user_id);
CREATE TABLE generations (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    method TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    params TEXT NOT NULL,              -- JSON
    text TEXT NOT NULL,
    stats TEXT NOT NULL,               -- JSON
    created_at TEXT NOT NULL
);
CREATE INDEX generations_user_item ON generations(user_id, item_id)
""",
    )


@migration
def m002_evaluation(db: sqlite_utils.Database) -> None:
    """Evaluation splits (which review is each user's target) and evaluation runs with scores."""
    _script(
        db,
        """
CREATE TABLE eval_splits (
    id INTEGER PRIMARY KEY,
    params TEXT NOT NULL,              -- canonical JSON of the thresholds
    params_hash TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,    -- hash of the reviews the split was computed from
    users INTEGER NOT NULL,
    items INTEGER NOT NULL,
    reviews INTEGER NOT NULL,
    iterations INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX eval_splits_key ON eval_splits(params_hash, data_fingerprint);
CREATE TABLE eval_split_reviews (
    split_id INTEGER NOT NULL REFERENCES eval_splits(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    role TEXT NOT NULL,                -- 'profile', 'val' or 'test'
    position INTEGER NOT NULL,         -- order in the user's kept history, oldest first
    PRIMARY KEY (split_id, user_id, item_id)
) WITHOUT ROWID;
CREATE INDEX eval_split_reviews_role ON eval_split_reviews(split_id, role);
CREATE TABLE eval_runs (
    id INTEGER PRIMARY KEY,
    split_id INTEGER NOT NULL REFERENCES eval_splits(id),
    config TEXT NOT NULL,              -- canonical JSON: split part, model, engine parameters
    config_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',  -- running, stopped, done
    elapsed_s REAL NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX eval_runs_key ON eval_runs(config_hash);
CREATE TABLE eval_results (
    run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    generation_id INTEGER,             -- the row in generations
    text TEXT NOT NULL,
    reference TEXT NOT NULL,
    rouge1 REAL NOT NULL,
    rougeL REAL NOT NULL,
    meteor REAL,                       -- NULL when WordNet was unavailable
    judge REAL,                        -- 0..1; NULL when not judged or unparsable
    judge_raw TEXT,                    -- the judge's reply; NULL when not judged
    llm_calls INTEGER NOT NULL DEFAULT 0,
    comparison_items INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    notes TEXT NOT NULL DEFAULT '[]',  -- JSON list of what the engine dropped or shortened
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, method, seed, user_id)
)
""",
    )


@migration
def m003_embeddings_follow_review_text(db: sqlite_utils.Database) -> None:
    """Drop a review's cached vectors when its text changes or it is deleted.

    Vectors are keyed by (user, item, model), not by text, so a re-imported review
    with new text would otherwise keep the vector of its old text.
    """
    _script(
        db,
        """
CREATE TRIGGER reviews_embeddings_update AFTER UPDATE OF text ON reviews
WHEN old.text IS NOT new.text BEGIN
    DELETE FROM embeddings WHERE user_id = old.user_id AND item_id = old.item_id;
END;
CREATE TRIGGER reviews_embeddings_delete AFTER DELETE ON reviews BEGIN
    DELETE FROM embeddings WHERE user_id = old.user_id AND item_id = old.item_id;
END
""",
    )


@migration
def m004_eval_uninformative_differences(db: sqlite_utils.Database) -> None:
    """Per result, how many LLM difference entries it used and how many were uninformative."""
    _script(
        db,
        """
ALTER TABLE eval_results ADD COLUMN differences INTEGER NOT NULL DEFAULT 0;
ALTER TABLE eval_results ADD COLUMN uninformative INTEGER NOT NULL DEFAULT 0
""",
    )
