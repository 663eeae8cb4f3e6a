"""A long ``dpl eval`` stopped by SIGTERM (``kill PID``), or by Ctrl-C when the shell started
it with SIGINT ignored, keeps its finished cells and says how to continue: the real command
in a subprocess, with the bundled model."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.common import copy_db

BIN = Path(sys.executable).parent
DEADLINE_S = 300.0


def _results(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM eval_results").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not made yet
        return 0
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["term", "int-while-ignored"])
def test_a_stopped_evaluation_keeps_its_cells(mi5_db: Path, tmp_path: Path, how: str):
    db = copy_db(mi5_db, tmp_path / "dev.db")
    args = [
        str(BIN / "dpl"),
        "eval",
        "--db",
        str(db),
        "--min-user-reviews",
        "6",
        "--min-item-reviewers",
        "3",
        "--methods",
        "none",
        "--users",
        "40",
        "--seed",
        "1",
        "--max-tokens",
        "8",
    ]

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job has it

    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigint if how != "term" else None,
    )
    try:
        end = time.monotonic() + DEADLINE_S
        while _results(db) == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "no cell finished"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in " ".join(err.split())
    done = _results(db)
    assert 1 <= done < 40
    conn = sqlite3.connect(db)
    status = conn.execute("SELECT status FROM eval_runs").fetchone()[0]
    conn.close()
    assert status == "stopped"
