"""Real server processes with the bundled GGUF on a free 127.0.0.1 port, for the tests that
need one: llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) and
llama.cpp's C++ ``llama-server``, built into the venv by ``scripts/build-llama-server.sh``.

Both start through ``benchmarks.common`` (the server benchmark starts its server there too);
here a server that does not start fails the test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.common import (
    SERVED,
    ServerFailed,
    free_port,
    get_json,
    llama_cpp_server,
    running,
    usable_cpus,
)
from models.registry import default_gguf_path

__all__ = ["LLAMA_SERVER", "SERVED", "cpp_llama_server", "get_json", "llama_server"]


@contextmanager
def _failing_the_test() -> Iterator[None]:
    """A server that exits or does not answer fails the test with its log's tail."""
    try:
        yield
    except ServerFailed as err:
        pytest.fail(str(err))


@contextmanager
def llama_server(log_dir: Path, *extra: str) -> Iterator[str]:
    """llama-cpp-python's server: its ``/v1`` URL once it answers.

    ``extra`` are more server options (``--embedding True``); the log is ``log_dir/server.log``."""
    with _failing_the_test(), llama_cpp_server(log_dir / "server.log", *extra) as url:
        yield url


LLAMA_SERVER = Path(sys.executable).parent / "llama-server"
"""Where ``scripts/build-llama-server.sh`` (run by ``make test``) puts llama.cpp's server."""


@contextmanager
def cpp_llama_server(log_dir: Path, *extra: str) -> Iterator[str]:
    """llama.cpp's ``llama-server`` serving the bundled GGUF as ``SERVED``: its base URL (no
    ``/v1``) once ``/health`` says the model is loaded; stopped on the way out."""
    if not LLAMA_SERVER.exists():
        pytest.fail(
            f"{LLAMA_SERVER} is missing: build it with "
            f"scripts/build-llama-server.sh {sys.executable} (make test does)"
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        str(LLAMA_SERVER),
        "-m",
        str(default_gguf_path()),
        "--alias",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(usable_cpus()),
        *extra,
    ]
    log = log_dir / "llama-server.log"
    # /health: nothing listens, then 503 while the model loads, then 200.
    with _failing_the_test(), running(argv, log, lambda: get_json(f"{base}/health")[0] == 200):
        yield base
