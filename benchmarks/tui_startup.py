"""How fast ``dpl-tui`` becomes usable, against a bare Textual table of the same users.

Each run is a fresh Python process (headless, 120x36) on a database holding the bundled
sample. Measured from spawning the process to the users table holding all 203 users:

- *dpl-tui*: ``DplApp`` with the real model loaders (they start in a background
  worker at mount; the time until the model and the embedder are ready is reported
  separately, because the app is usable before then).
- *baseline*: a minimal Textual app with one DataTable filled from the same
  ``UserStore.users()`` query: what any Textual front end on this store costs.

    python -m benchmarks.tui_startup [--repeats 5]

Writes benchmarks/results/tui.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import REPO, RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "tui.md"

DPL = """
import asyncio, json, time
from dpl_tui.app import DplApp

async def main():
    app = DplApp(db_path=DB)
    async with app.run_test(size=(120, 36)) as pilot:
        while not (type(app.screen).__name__ == "UsersScreen"
                   and app.screen.query_one("#users").row_count == 203):
            await pilot.pause(0.005)
        usable = time.time()
        while "SmolLM2" not in app.model_status:
            await pilot.pause(0.02)
        model = time.time()
        while app.activity:
            await pilot.pause(0.02)
        return usable, model, time.time()

usable, model, embedder = asyncio.run(main())
print(json.dumps({"usable": usable, "model": model, "embedder": embedder}))
"""

BASELINE = """
import asyncio, json, time
from textual.app import App
from textual.widgets import DataTable
from user_store import UserStore

class Bare(App):
    def compose(self):
        yield DataTable()
    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("User", "Reviews", "Avg rating", "Comparable items")
        for u in UserStore(DB).users(m=4):
            table.add_row(u.user_id, u.review_count, round(u.avg_rating, 2), u.comparable_items)

async def main():
    app = Bare()
    async with app.run_test(size=(120, 36)) as pilot:
        while app.query_one(DataTable).row_count != 203:
            await pilot.pause(0.005)
        return time.time()

print(json.dumps({"usable": asyncio.run(main())}))
"""


def run(code: str, db: Path, home: Path) -> dict[str, float]:
    env = {**os.environ, "DPL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", f"DB = {str(db)!r}\n" + textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    stamps = json.loads(out.strip().splitlines()[-1])
    return {k: v - started for k, v in stamps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from user_store import UserStore
    from user_store.ingest import ingest_sample

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sample.db"
        with UserStore(db) as store:
            ingest_sample(store)
        dpl, base = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            base.append(run(BASELINE, db, Path(tmp)))
            dpl.append(run(DPL, db, Path(tmp)))

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ratios = [d["usable"] / b["usable"] for d, b in zip(dpl, base, strict=True)]
    lines = [
        "# dpl-tui start-up",
        "",
        f"`python -m benchmarks.tui_startup --repeats {args.repeats}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; medians of "
        f"{args.repeats} fresh processes each, headless at 120x36, bundled sample (203 users).",
        "",
        "| Run | Process spawn to users table filled | Model ready | Embedder ready |",
        "|---|---|---|---|",
        f"| baseline (bare Textual DataTable, same query) | {med(base, 'usable'):.2f} s | – | – |",
        f"| dpl-tui | {med(dpl, 'usable'):.2f} s | {med(dpl, 'model'):.2f} s | "
        f"{med(dpl, 'embedder'):.2f} s |",
        "",
        f"Ratio dpl-tui / baseline to a usable users screen: **{statistics.median(ratios):.2f}x** "
        f"(median of paired runs; each pair: {', '.join(f'{r:.2f}' for r in ratios)}).",
        "The models load afterwards in a background thread worker; the table is usable meanwhile.",
        "",
    ]
    write_results(RESULTS, "\n".join(lines))


if __name__ == "__main__":
    main()
