"""What the benchmarks share, and the tests with them: where the data and the results are, a
private copy of a store, a timed engine run, writing a results file, and a model server on a
free port.

Only the standard library is imported here, and only what is cheap: ``benchmarks.ingest``
runs its bare baseline in a child process that imports this module, and its peak memory is
part of the measurement. Everything else is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
"""The checkout's root."""
DATA = Path(os.environ.get("DPL_SHARED_DATA", REPO.parent / "shared" / "data")) / "amazon14-mi5"
"""The dev data (reviews.jsonl.gz, meta.jsonl.gz); ``DPL_SHARED_DATA`` names its parent."""
RESULTS_DIR = REPO / "benchmarks" / "results"
"""Where each benchmark writes its report by default."""

PathT = TypeVar("PathT", str, Path)


# stores


def copy_db(source: str | Path, target: PathT) -> PathT:
    """A private copy of a SQLite database, through SQLite's backup (a consistent copy even
    with a write-ahead log); returns ``target``."""
    import sqlite3

    src, dst = sqlite3.connect(str(source)), sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def dev_store(path: Path) -> Path:
    """A fresh store at ``path`` holding the dev data, as ``dpl ingest`` imports it."""
    from user_store import UserStore
    from user_store.ingest import ingest_files

    with UserStore(path) as store:
        ingest_files(store, [DATA / "reviews.jsonl.gz"], [DATA / "meta.jsonl.gz"])
    return path


# timing


@dataclass(frozen=True)
class TimedRun:
    """One ``Engine.run`` to its end, timed from its first event asked for."""

    seconds: float
    first_token_s: float | None
    """Until the first token of the review: what a person waits before reading (None when no
    token came)."""
    result: Any
    """The run's ``GenerationResult``."""


def timed_run(engine: Any, target: Any, method: str) -> TimedRun:
    """``engine.run(target, method)`` drained, with the time to its first review token."""
    from dpl_engine import ResultEvent, TokenEvent

    start = time.perf_counter()
    first = None
    result = None
    for event in engine.run(target, method):
        if isinstance(event, TokenEvent) and first is None:
            first = time.perf_counter() - start
        elif isinstance(event, ResultEvent):
            result = event.result
    return TimedRun(time.perf_counter() - start, first, result)


def dev_setup(prefix: str) -> tuple[Path, Path, Any, Any]:
    """A fresh temporary folder, the dev data's store in it, and the bundled generator and
    embedder loaded: ``(folder, store path, generator, embedder)``."""
    import tempfile

    from models.embeddings import load_embedder
    from models.llama import load_generator

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    return tmp, dev_store(tmp / "base.db"), load_generator(), load_embedder()


def timed_differences(
    base: Path, path: Path, generator: Any, embedder: Any, config: Any, user: str
) -> tuple[list[Any], float]:
    """The engine's differences step for ``user``'s held-out review, on a fresh copy of the
    store at ``base`` (nothing cached), and its seconds: the comparison sets (embedding and
    clustering) are made before the clock starts."""
    from dpl_engine import Engine
    from user_store import UserStore

    copy_db(base, path)
    store = UserStore(path)
    try:
        engine = Engine(store, generator, embedder, config)
        target = engine.held_out_target(user)
        engine.comparisons(target)
        start = time.perf_counter()
        found = engine.differences(target)
        return found, time.perf_counter() - start
    finally:
        store.close()


# results


def write_results(path: Path, text: str, *, echo: bool = True) -> Path:
    """``text`` written to ``path`` (its folder made if need be) and, with ``echo``, printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if echo:
        print(text)
    return path


# servers


SERVED = "smollm2-135m"
"""The name the bundled GGUF is served under."""
START_DEADLINE_S = 180.0
"""Generous: the server imports FastAPI and loads the model before it answers."""


class ServerFailed(RuntimeError):
    """A server process exited, or did not answer in time, before it was ready."""


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> tuple[int, object]:
    """(status, body) of a GET; status 0 while nothing listens."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None
    except OSError:
        return 0, None


@contextmanager
def running(argv: list[str], log_path: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """``argv`` started with its output in ``log_path``, once ``ready()``; stopped on the way
    out, also on failure. Raises ``ServerFailed`` if it exits or is not ready in
    ``START_DEADLINE_S``."""
    name = Path(argv[0]).name if argv[0] != sys.executable else argv[2]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while not ready():
                if proc.poll() is not None:
                    raise ServerFailed(
                        f"{name} exited ({proc.returncode}): "
                        f"{log_path.read_text(errors='replace')[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise ServerFailed(f"{name} did not answer within {START_DEADLINE_S} s")
                time.sleep(0.2)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


@contextmanager
def llama_cpp_server(
    log_path: Path,
    *extra: str,
    gguf: Path | None = None,
    threads: int | None = None,
    n_ctx: int = 8192,
) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) serving
    ``gguf`` (default: the bundled model) as ``SERVED`` on a free 127.0.0.1 port: its ``/v1``
    URL once it answers; stopped on the way out.

    ``threads`` defaults to every usable CPU; ``extra`` are more server options
    (``--embedding True``)."""
    if gguf is None:
        from models.registry import default_gguf_path

        gguf = default_gguf_path()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    n = str(threads or usable_cpus())
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--model_alias", SERVED, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", n, "--n_threads_batch", n,
        # Without this the server ends a running answer when the next request arrives.
        "--interrupt_requests", "False", *extra,
    ]  # fmt: skip
    with running(argv, log_path, lambda: get_json(f"{url}/models")[0] == 200):
        yield url
