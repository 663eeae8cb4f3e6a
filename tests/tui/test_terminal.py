"""The installed ``dpl-tui`` in a real terminal (tmux): the entry point starts, draws the
users screen, takes keys, opens a user and quits, also while a model is still loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

BIN = Path(sys.executable).parent


class Signals:
    """The states the app announces in $DPL_TUI_SIGNALS (see ``DplApp.signal``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: set[int] = set()

    def states(self) -> list[dict]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, tmux: Tmux, timeout: float = 90.0, since: int = 0, **wanted: object) -> dict:
        """The first state announced after the first ``since`` with every ``wanted`` value
        that no earlier wait returned: each announcement answers one wait, in whatever
        order they came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, state in enumerate(self.states()):
                if i < since or i in self.used:
                    continue
                if all(state.get(k) == v for k, v in wanted.items()):
                    self.used.add(i)
                    return state
            time.sleep(0.1)
        raise AssertionError(
            f"the app never announced {wanted}; it announced {self.states()}\n"
            f"and the pane shows:\n{tmux.pane()}"
        )

    def press(self, tmux: Tmux, keys: str, *, literal: bool = False, **wanted: object) -> dict:
        """Send ``keys`` and wait for the state they lead to (announced after they were sent)."""
        since = len(self.states())
        tmux("send-keys", "-t", "dpl", *(["-l"] if literal else []), keys)
        return self.wait_for(tmux, since=since, **wanted)


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


def _command(dpl_home: Path, signals: Path, *args: object) -> str:
    # COLUMNS/LINES from the test run would override the pane's real size
    return (
        f"env -u COLUMNS -u LINES DPL_HOME={dpl_home} DPL_TUI_SIGNALS={signals} "
        f"TERM=xterm-256color {BIN / 'dpl-tui'} " + " ".join(str(a) for a in args)
    )


def test_dpl_tui_in_tmux(sample_db, dpl_home, tmp_path):
    entry = BIN / "dpl-tui"
    assert entry.exists(), f"{entry} missing: install the project (pip install -e .)"
    tmux = Tmux(f"dpl-test-{os.getpid()}")
    signals = Signals(tmp_path / "signals.jsonl")
    command = _command(dpl_home, signals.path, "--db", sample_db)
    tmux("new-session", "-d", "-s", "dpl", "-x", "120", "-y", "36", command)
    try:
        signals.wait_for(tmux, state="focus", screen="UsersScreen", widget="users")
        signals.wait_for(tmux, state="ready", screen="users", rows=203)
        screen = tmux.wait_for("203 users")
        assert "Avg rating" in screen and "Comparable items" in screen
        assert tmux("display", "-p", "-t", "dpl", "#{window_width}").strip() == "120"
        assert "Running:" in tmux.wait_for("GPU offload:")
        # Keys typed before the search box has focus would go to the table.
        signals.press(tmux, "/", state="focus", widget="search")
        signals.press(
            tmux, "A2EZWZ8MB", literal=True, state="ready", screen="users", query="A2EZWZ8MB"
        )
        tmux.wait_for("1 users")
        tmux.wait_for("A2EZWZ8MBEDOLN")
        signals.press(tmux, "Enter", state="focus", widget="users")  # search box -> table
        signals.press(tmux, "Enter", state="ready", screen="user", user="A2EZWZ8MBEDOLN")
        tmux.wait_for("History of A2EZWZ8MBEDOLN")
        tmux.wait_for("The real review is hidden from the method")
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
    signals = Signals(tmp_path / "signals.jsonl")
    status = tmp_path / "exit-status"
    command = _command(dpl_home, signals.path, "--db", sample_db, "--model", never)
    tmux(
        "new-session", "-d", "-s", "dpl", "-x", "120", "-y", "36", f"{command}; echo $? > {status}"
    )
    try:
        tmux.wait_for("Model: loading")
        signals.wait_for(tmux, state="ready", screen="users", rows=203)
        signals.wait_for(tmux, state="focus", screen="UsersScreen", widget="users")
        # "g" acts on the held-out target, which is shown after the history: wait for both.
        signals.press(tmux, "Enter", state="ready", screen="user", target="held-out")
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
