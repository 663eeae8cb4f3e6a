"""Fixtures for the app's tests: a database holding the bundled sample, and the app
built on the real store and engine with fast scripted models (the real models have
their own tests here too, in test_main_flow_real.py)."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.fakes import FakeEmbedder, FakeGenerator


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests of this folder on a fresh event loop (Pilot needs one)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture(autouse=True)
def no_background_preparation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's tests count LLM calls and wait for states: background preparation would
    add calls of its own, so it is off unless a test turns it on (``prepare_ahead=True``).
    Set in the environment, it reaches the dpl-tui processes the terminal tests start."""
    monkeypatch.setenv("DPL_PREPARE_AHEAD", "0")


@pytest.fixture(scope="session")
def sample_db_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample imported once per session; tests copy it."""
    from user_store import UserStore
    from user_store.ingest import ingest_sample

    path = tmp_path_factory.mktemp("tui-sample") / "sample.db"
    with UserStore(path) as store:
        ingest_sample(store)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def sample_db(sample_db_master: Path, tmp_path: Path) -> Path:
    """A private copy of the sample database (tests write caches and generations)."""
    path = tmp_path / "sample.db"
    shutil.copy(sample_db_master, path)
    return path


def slow_generator(delay_s: float = 0.02, words: int = 200) -> FakeGenerator:
    """A scripted model whose review takes ``words * delay_s`` seconds to stream."""
    review = " ".join(f"word{i}" for i in range(words))
    return FakeGenerator(review=review, on_token=lambda: time.sleep(delay_s))


@pytest.fixture
def make_app() -> Callable[..., Any]:
    """``make_app(db_path, generator=None, embedder=None, **kw)``: the real app on fakes."""

    def build(db_path: Path, generator: Any = None, embedder: Any = None, **kw: Any) -> Any:
        from dpl_tui.app import DplApp

        gen = generator or FakeGenerator()
        emb = embedder or FakeEmbedder()
        return DplApp(
            db_path=db_path,
            generator_factory=lambda _choice: gen,
            embedder_factory=lambda _path: emb,
            **kw,
        )

    return build


async def wait_until(pilot: Any, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text."""
    import html
    import re

    svg = app.export_screenshot()
    lines = re.findall(r"<text[^>]*>(.*?)</text>", svg)
    return html.unescape("".join(lines)).replace("\xa0", " ")
