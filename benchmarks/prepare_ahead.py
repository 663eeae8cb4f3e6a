"""What background preparation saves a person: from opening a user in dpl-tui to a complete
differences screen, with preparation on and off.

Each run is a fresh Python process driving the real app with Pilot (headless, 140x42) on a
fresh copy of the bundled sample, with the bundled models and the app's default settings.
Once both models are loaded, the run opens the user from the users table (``/``, the id,
Enter, Enter), waits until the history and held-out target are shown, pauses as a person
reading the history would (20 s by default), presses ``d`` and waits until every item's
differences and the profile are on the screen. The time reported runs from the key press
that opens the user to that complete screen, pause included; the part after ``d`` is
reported too. The baseline is the same run with preparation off, in the same invocation.

    python -m benchmarks.prepare_ahead [--users ID ...] [--pause 20] [--repeats 1]

Writes benchmarks/results/prepare-ahead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks.common import REPO, RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "prepare-ahead.md"
USERS = ["A2EZWZ8MBEDOLN", "ADH0O8UVJOT10"]

DRIVER = """
import asyncio, json, time
from dpl_tui.app import DplApp
from dpl_tui.screens.differences import DifferencesScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen

async def wait(pilot, check):
    while not check():
        await pilot.pause(0.02)

async def main():
    app = DplApp(db_path=DB, prepare_ahead=PREPARE)
    async with app.run_test(size=(140, 42)) as pilot:
        await wait(pilot, lambda: isinstance(app.screen, UsersScreen)
                   and app.screen.query_one("#users").row_count > 0)
        await wait(pilot, lambda: "SmolLM2" in app.model_status and not app.activity)
        opened = time.perf_counter()
        await pilot.press("slash", *USER, "enter", "enter")
        await wait(pilot, lambda: isinstance(app.screen, UserScreen)
                   and app.screen.held_out is not None)
        shown = time.perf_counter()
        await asyncio.sleep(PAUSE)  # the person reads the history; the app keeps running
        ready_before = app.preparer.target_ready(USER)
        pressed = time.perf_counter()
        await pilot.press("d")
        await wait(pilot, lambda: isinstance(app.screen, DifferencesScreen)
                   and app.screen.view is not None)
        done = time.perf_counter()
        view = app.screen.view
        return {"shown": shown - opened, "total": done - opened, "after_d": done - pressed,
                "ready_before": ready_before, "items": len(view.differences),
                "profile": bool(view.profile.text)}

print(json.dumps(asyncio.run(main())))
"""


def run(db: Path, home: Path, user: str, prepare: bool, pause: float) -> dict:
    env = {**os.environ, "DPL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("DPL_PREPARE_AHEAD", None)
    head = f"DB = {str(db)!r}\nUSER = {user!r}\nPREPARE = {prepare!r}\nPAUSE = {pause!r}\n"
    out = subprocess.run(
        [sys.executable, "-c", head + textwrap.dedent(DRIVER)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", nargs="*", default=USERS)
    parser.add_argument("--pause", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    from models.llama import default_threads
    from user_store import UserStore
    from user_store.ingest import ingest_sample

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master.db"
        with UserStore(master) as store:
            ingest_sample(store)
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for user in args.users:
            for _ in range(args.repeats):
                for prepare in (False, True):  # interleaved: both see the same machine load
                    home = Path(tempfile.mkdtemp(dir=tmp))  # no settings, no model cache
                    db = home / "sample.db"
                    shutil.copy(master, db)
                    row = {
                        "user": user,
                        "prepare": prepare,
                        **run(db, home, user, prepare, args.pause),
                    }
                    rows.append(row)
                    print(row, flush=True)

    def med(user: str, prepare: bool, key: str) -> float:
        return statistics.median(
            r[key] for r in rows if r["user"] == user and r["prepare"] is prepare
        )

    table = []
    for user in args.users:
        off, on = med(user, False, "total"), med(user, True, "total")
        items = next(r["items"] for r in rows if r["user"] == user)
        ready = sum(r["ready_before"] for r in rows if r["user"] == user and r["prepare"])
        table.append(
            f"| `{user}` | {items} | {off:.1f} s ({med(user, False, 'after_d'):.1f} s after d) | "
            f"{on:.1f} s ({med(user, True, 'after_d'):.1f} s after d) | "
            f"{ready} of {args.repeats} | **{off / on:.2f}x** |"
        )
    lines = [
        "# Background preparation: opening a user to a complete differences screen",
        "",
        f"`python -m benchmarks.prepare_ahead --pause {args.pause:g} --repeats {args.repeats}` "
        f"on {platform.machine()}, {os.cpu_count()} CPUs ({default_threads()} llama.cpp "
        f"threads), Python {platform.python_version()}; a fresh process and a fresh copy of "
        "the bundled sample per run, bundled models, the app's default settings, headless "
        f"at 140x42. Time from the key that opens the user, through a {args.pause:g}-second "
        "pause on the history, to every item's differences and the profile on screen"
        + (f"; medians of {args.repeats} runs." if args.repeats > 1 else "; one run each."),
        "",
        "| user | comparison items | preparation off | preparation on | prepared before d "
        "| off / on |",
        "|---|---:|---:|---:|---:|---:|",
        *table,
        "",
    ]
    write_results(RESULTS, "\n".join(lines))


if __name__ == "__main__":
    main()
