"""dpl against llama.cpp's own C++ ``llama-server``, the server people run, built from the same
llama.cpp sources as the installed llama-cpp-python and started with two parallel slots.

The server's ``/slots`` endpoint says which slots are decoding and how far each has got, and
its log names every task it starts and cancels, so the tests can see two differences calls in
flight at once and both stopped by one cancel."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.common import copy_db
from dpl_engine import CancelToken, Engine, EngineConfig
from dpl_engine.types import Cancelled
from models import SamplingParams
from models.server import ServerConfig, connect
from tests.differences_check import assert_read
from tests.engine.fakes import RecordingGenerator
from user_store import UserStore

from .llama_server import SERVED, cpp_llama_server, get_json

pytestmark = pytest.mark.slow

USER = "A34O0KQV4QXWNQ"  # three comparison items with k=3 (tests/engine/test_dev_data.py)
DEADLINE_S = 600.0
"""Longest a test waits for a state the server reports; reached only when it fails."""
POLL_S = 0.01
"""How often the tests ask the server for its state (a poll, not a wait for one)."""

CONFIG = EngineConfig(
    k=3,
    m=4,
    n=2,
    seed=11,
    # Greedy, and room for the bundled model's JSON to end on its own.
    analysis=SamplingParams(max_tokens=256, temperature=0.0),
    max_review_chars=600,
)


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama-server-cpp")


@pytest.fixture(scope="module")
def server(server_dir: Path) -> Iterator[str]:
    """llama-server with two slots of 4,096 tokens each; its base URL (no /v1)."""
    with cpp_llama_server(server_dir, "--parallel", "2", "--ctx-size", "8192") as base:
        yield base


@pytest.fixture(scope="module")
def server_log(server: str, server_dir: Path) -> Path:
    """The running server's log, where it names each task it starts and cancels."""
    return server_dir / "llama-server.log"


def connected(base: str, concurrency: int):
    config = ServerConfig(name="cpp", url=f"{base}/v1", model=SERVED, timeout_s=300.0,
                          concurrency=concurrency)  # fmt: skip
    return connect(config)


def slots(base: str) -> list[dict]:
    status, body = get_json(f"{base}/slots")
    assert status == 200 and isinstance(body, list), (status, body)
    return body


class SlotWatch:
    """Polls ``/slots`` in a thread: the most slots seen decoding at once, and the latest view.

    A failed poll is raised by the next read of ``latest`` and on the way out, so a test never
    waits on a watcher that has stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.most_busy = 0
        self._latest: list[dict] = []
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @property
    def latest(self) -> list[dict]:
        if self._error is not None:
            raise self._error
        return self._latest

    def _poll(self) -> None:
        try:
            while not self._done.is_set():
                view = slots(self.base)
                self._latest = view
                self.most_busy = max(self.most_busy, sum(s["is_processing"] for s in view))
                self._done.wait(POLL_S)
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            self._error = err

    def __enter__(self) -> SlotWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


def wait_until(predicate: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < end, "the server never reached the expected state"
        time.sleep(POLL_S)


def decoded(slot: dict) -> int:
    return slot.get("next_token", [{}])[0].get("n_decoded", 0)


def differences_through(base: str, db: Path, concurrency: int, embedder, cancel=None):
    """The held-out target's differences through the server, and the recorded calls."""
    gen = RecordingGenerator(connected(base, concurrency))
    with UserStore(db) as store:
        engine = Engine(store, gen, embedder, CONFIG)
        return engine.differences(engine.held_out_target(USER), cancel=cancel), gen


def test_dpl_finds_a_llama_cpp_server_with_two_slots(server):
    gen = connected(server, 2)
    assert gen.kind == "llama.cpp" and gen.served == (SERVED,)
    assert gen.slots == 2 and gen.concurrency == 2
    assert len(slots(server)) == 2


def key(messages: list) -> str:
    return json.dumps(messages, sort_keys=True)


def test_concurrent_differences_overlap_and_each_answer_is_its_items(
    server, mi5_db, tmp_path, bundled_embedder
):
    """Two calls really run at once on the server's two slots; they ask what one call at a
    time asks, under the real differences schema, and each item keeps its own answer.

    The answers themselves are not compared with the one-at-a-time ones: llama-server decodes
    both slots in one batch, and llama.cpp's numbers depend on the batch, so even at
    temperature 0 an answer can differ (ggml-org/llama.cpp#6950). That equality is tested with
    scripted backends (tests/engine/test_concurrent_differences.py)."""
    with SlotWatch(server) as one_by_one:
        sequential, seq_calls = differences_through(
            server, copy_db(mi5_db, tmp_path / "a.db"), 1, bundled_embedder
        )
    with SlotWatch(server) as side_by_side:
        concurrent, calls = differences_through(
            server, copy_db(mi5_db, tmp_path / "b.db"), 2, bundled_embedder
        )
    assert one_by_one.most_busy == 1 and side_by_side.most_busy == 2
    # The same requests, and the items in the same order.
    assert sorted(key(m) for m, _ in calls.json_answers) == sorted(
        key(m) for m, _ in seq_calls.json_answers
    )
    assert [d.item_id for d in concurrent] == [d.item_id for d in sequential]
    assert len(concurrent) == calls.calls["json"] == 3
    # Each item holds the answer to its own prompt (one at a time, calls are made in item
    # order), though the answers arrived in whatever order the slots finished.
    prompt_of = {d.item_id: key(m) for d, (m, _) in zip(sequential, seq_calls.json_answers,
                                                         strict=True)}  # fmt: skip
    answer_to = {key(m): value for m, value in calls.json_answers}
    for d in concurrent:
        assert json.loads(d.raw) == answer_to[prompt_of[d.item_id]], d.item_id
    # llama-server enforced the schema: every answer is JSON it accepts, none fell back.
    assert assert_read(concurrent, max_fallback_share=0.0) == 3


def test_one_cancel_stops_both_calls_on_the_server(
    server, server_log, mi5_db, tmp_path, bundled_embedder
):
    """Cancelled while both slots are writing: the server cancels both tasks (its log says so),
    starts no third one, and dpl stores nothing."""
    db = copy_db(mi5_db, tmp_path / "c.db")
    token = CancelToken()
    outcome: list[BaseException] = []
    log_start = len(server_log.read_text())

    def run() -> None:
        try:
            differences_through(server, db, 2, bundled_embedder, cancel=token)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    def writing() -> list[int]:
        return [s["id_task"] for s in watch.latest if s["is_processing"] and decoded(s) >= 2]

    def log() -> str:
        return server_log.read_text()[log_start:]

    worker = threading.Thread(target=run)
    with SlotWatch(server) as watch:
        worker.start()
        # Both slots have started writing their answers: cancel while both are mid-answer.
        wait_until(lambda: len(writing()) == 2)
        in_flight = writing()
        token.cancel()
        worker.join(timeout=DEADLINE_S)
        wait_until(lambda: not any(s["is_processing"] for s in watch.latest))
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    # The server was told: it cancelled both tasks mid-answer and started no other.
    wait_until(lambda: all(f"cancel task, id_task = {t}" in log() for t in in_flight))
    assert log().count("processing task") == 2, log()
    with UserStore(db) as store:
        assert store.stats().cached.get("differences", 0) == 0
