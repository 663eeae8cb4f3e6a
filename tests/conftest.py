"""Shared fixtures: every data path points into tmp_path, and the real dev data is found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DPL_SHARED_DATA", REPO.parent / "shared" / "data"))
MI5 = SHARED_DATA / "amazon14-mi5"


@pytest.fixture(autouse=True)
def dpl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every dpl location at a fresh folder, so no test touches real user data."""
    home = tmp_path / "dpl-home"
    monkeypatch.setenv("DPL_HOME", str(home))
    for var in ("DPL_DB", "DPL_CONFIG", "DPL_MODEL", "DPL_SIDE_BY_SIDE"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def mi5() -> Path:
    """The real Amazon 2014 Musical Instruments 5-core data (../shared/data/amazon14-mi5)."""
    if not (MI5 / "reviews.jsonl.gz").exists():
        pytest.fail(f"dev data not found at {MI5}; set DPL_SHARED_DATA to the shared data folder")
    return MI5


@pytest.fixture(scope="session")
def mi5_db(tmp_path_factory: pytest.TempPathFactory, mi5: Path) -> Path:
    """A database holding the real mi5 reviews and metadata, imported once per session.

    Returns its path; open ``UserStore(mi5_db)`` in the test. Treat it as read-only
    (engine caches written to it are shared by later tests)."""
    from user_store import UserStore
    from user_store.ingest import ingest_files

    path = tmp_path_factory.mktemp("mi5-db") / "mi5.db"
    store = UserStore(path)
    try:
        ingest_files(store, [mi5 / "reviews.jsonl.gz"], [mi5 / "meta.jsonl.gz"])
    finally:
        store.close()
    return path


@pytest.fixture
def dev(mi5_db: Path, tmp_path: Path):
    """(store, split): a private copy of the mi5 database, split under the tests' thresholds
    (``tests.dev_split.DEV_PARAMS``); engine caches written to it stay in this test."""
    from benchmarks.common import copy_db
    from dpl_engine.evaluation import split as sp
    from tests.dev_split import DEV_PARAMS
    from user_store import UserStore

    store = UserStore(copy_db(mi5_db, tmp_path / "mi5.db"))
    try:
        yield store, sp.prepare(store, DEV_PARAMS)
    finally:
        store.close()


@pytest.fixture(scope="session")
def bundled_generator():
    """The bundled SmolLM2-135M GGUF loaded once per test session (real llama.cpp)."""
    from models.llama import load_generator

    return load_generator()


@pytest.fixture(scope="session")
def bundled_embedder():
    """The bundled all-MiniLM-L6-v2 loaded once per test session (real sentence-transformers)."""
    from models.embeddings import load_embedder

    return load_embedder()
