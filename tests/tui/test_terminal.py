"""The installed ``dpl-tui`` in a real terminal (tmux): the entry point starts, draws the
users screen, takes keys, opens a user and quits, also while a model is still loading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

BIN = Path(sys.executable).parent


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return proc.stdout

    def pane(self) -> str:
        return self("capture-pane", "-p", "-t", "dpl")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.pane()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear; the pane shows:\n{self.pane()}")

    def alive(self) -> bool:
        return "dpl" in self("list-sessions")


def test_dpl_tui_in_tmux(sample_db, dpl_home):
    entry = BIN / "dpl-tui"
    assert entry.exists(), f"{entry} missing: install the project (pip install -e .)"
    tmux = Tmux(f"dpl-test-{os.getpid()}")
    # COLUMNS/LINES from the test run would override the pane's real size
    command = (
        f"env -u COLUMNS -u LINES DPL_HOME={dpl_home} TERM=xterm-256color {entry} --db {sample_db}"
    )
    tmux("new-session", "-d", "-s", "dpl", "-x", "120", "-y", "36", command)
    try:
        tmux.wait_for("? Help")
        screen = tmux.wait_for("203 users")
        assert "Avg rating" in screen and "Comparable items" in screen
        assert tmux("display", "-p", "-t", "dpl", "#{window_width}").strip() == "120"
        assert "Running:" in tmux.wait_for("GPU offload:")
        tmux("send-keys", "-t", "dpl", "/")
        # Keys typed before the search box has focus go to the table; on a loaded machine the
        # focus change can lag the key that asked for it.
        time.sleep(1.0)
        tmux("send-keys", "-t", "dpl", "-l", "A2EZWZ8MB")
        tmux.wait_for("1 users")
        tmux.wait_for("A2EZWZ8MBEDOLN")
        tmux("send-keys", "-t", "dpl", "Enter")  # search box -> table
        time.sleep(0.5)
        tmux("send-keys", "-t", "dpl", "Enter")  # open the user
        tmux.wait_for("History of A2EZWZ8MBEDOLN")
        tmux.wait_for("Held-out latest review")
        tmux("send-keys", "-t", "dpl", "C-q")
        deadline = time.monotonic() + 90
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not tmux.alive(), "dpl-tui did not exit on Ctrl+Q"
    finally:
        tmux("kill-server")


def test_quitting_does_not_wait_for_a_model_that_is_still_loading(sample_db, dpl_home, tmp_path):
    # A named pipe with no writer: reading the "model" blocks forever, as a load that has not
    # finished would. Ctrl+Q must still end the process (it used to wait for the load), also
    # when a screen's work is waiting for that model.
    never = tmp_path / "never.gguf"
    os.mkfifo(never)
    tmux = Tmux(f"dpl-test-load-{os.getpid()}")
    status = tmp_path / "exit-status"
    command = (
        f"env -u COLUMNS -u LINES DPL_HOME={dpl_home} TERM=xterm-256color "
        f"{BIN / 'dpl-tui'} --db {sample_db} --model {never}; echo $? > {status}"
    )
    tmux("new-session", "-d", "-s", "dpl", "-x", "120", "-y", "36", command)
    try:
        tmux.wait_for("Model: loading")
        tmux("send-keys", "-t", "dpl", "Enter")  # open the first user
        tmux.wait_for("History of")
        tmux("send-keys", "-t", "dpl", "g")  # generate: its work will wait for the model
        tmux.wait_for("Extracting differences")
        tmux("send-keys", "-t", "dpl", "C-q")
        deadline = time.monotonic() + 60
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert status.exists(), f"dpl-tui hung on quit; the pane shows:\n{tmux.pane()}"
        assert status.read_text().strip() == "0"
    finally:
        tmux("kill-server")
