"""Real server processes with the bundled GGUF on a free 127.0.0.1 port, for the tests that
need one: llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) and
llama.cpp's C++ ``llama-server``, built into the venv by ``scripts/build-llama-server.sh``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from models.registry import default_gguf_path

from .fake_openai import free_port

SERVED = "smollm2-135m"
START_DEADLINE_S = 180.0
"""Generous: the server imports FastAPI and loads the model before it answers."""


@contextmanager
def _running(argv: list[str], log_path: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """``argv`` started with its output in ``log_path``, once ``ready()``; stopped on the way
    out, also on failure."""
    name = Path(argv[0]).name if argv[0] != sys.executable else argv[2]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited ({proc.returncode}): "
                                f"{log_path.read_text(errors='replace')[-2000:]}")  # fmt: skip
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not answer within {START_DEADLINE_S} s")
                time.sleep(0.2)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _threads() -> str:
    return str(max(1, len(os.sched_getaffinity(0))))


@contextmanager
def llama_server(log_dir: Path, *extra: str) -> Iterator[str]:
    """llama-cpp-python's server: its ``/v1`` URL once it answers.

    ``extra`` are more server options (``--embedding True``); the log is ``log_dir/server.log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    threads = _threads()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf_path()),
            "--model_alias", SERVED, "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", "8192", "--n_threads", threads, "--n_threads_batch", threads,
            # Without this the server ends a running answer when the next request arrives.
            "--interrupt_requests", "False", *extra]  # fmt: skip
    with _running(argv, log_dir / "server.log", lambda: get_json(f"{url}/models")[0] == 200):
        yield url


LLAMA_SERVER = Path(sys.executable).parent / "llama-server"
"""Where ``scripts/build-llama-server.sh`` (run by ``make test``) puts llama.cpp's server."""


def get_json(url: str) -> tuple[int, object]:
    """(status, body) of a GET; status 0 while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None
    except OSError:
        return 0, None


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
        _threads(),
        *extra,
    ]
    # /health: nothing listens, then 503 while the model loads, then 200.
    with _running(argv, log_dir / "llama-server.log", lambda: get_json(f"{base}/health")[0] == 200):
        yield base
