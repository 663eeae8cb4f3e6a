"""llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) with the
bundled GGUF on a free 127.0.0.1 port, for the tests that need a real server process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from models.registry import default_gguf_path

from .fake_openai import free_port

SERVED = "smollm2-135m"
START_DEADLINE_S = 180.0
"""Generous: the server imports FastAPI and loads the model before it answers."""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@contextmanager
def llama_server(log_dir: Path, *extra: str) -> Iterator[str]:
    """The server's ``/v1`` URL once it answers; stopped on the way out, also on failure.

    ``extra`` are more server options (``--embedding True``); the log is ``log_dir/server.log``."""
    port = free_port()
    log_path = log_dir / "server.log"
    threads = str(max(1, len(os.sched_getaffinity(0))))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf_path()),
             "--model_alias", SERVED, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "8192", "--n_threads", threads, "--n_threads_batch", threads,
             # Without this the server ends a running answer when the next request arrives.
             "--interrupt_requests", "False", *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while not _answers(url):
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited ({proc.returncode}): "
                                f"{log_path.read_text(errors='replace')[-2000:]}")  # fmt: skip
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer within {START_DEADLINE_S} s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
