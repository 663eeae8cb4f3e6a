"""How long the ``dpl`` command line takes to start, against a bare Python start.

Each run is a fresh process, spawned from this script, timed from spawn to exit:

- *python -c pass*: the interpreter alone (the floor every command pays);
- *import typer, rich*: the two libraries the command line is built on;
- *dpl --help* and *dpl stats* (on a store holding the bundled sample).

The runs are interleaved (one of each per round), so all of them see the same load.

    python -m benchmarks.cli_startup [--repeats 15]

Writes benchmarks/results/cli.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "cli.md"
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, capture_output=True, check=True, timeout=120)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from user_store import UserStore
    from user_store.ingest import ingest_sample

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sample.db"
        with UserStore(db) as store:
            ingest_sample(store)
        env = {**os.environ, "DPL_HOME": tmp}
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import typer, rich (the CLI's libraries)": [
                sys.executable,
                "-c",
                "import typer, rich.console",
            ],
            "dpl --help": [str(BIN / "dpl"), "--help"],
            "dpl stats": [str(BIN / "dpl"), "stats", "--db", str(db)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the disk cache once
            timed(argv, env)
        for _ in range(args.repeats):
            for name, argv in commands.items():
                times[name].append(timed(argv, env))

    floor = statistics.median(times["python -c pass"])
    lines = [
        "# Command-line start-up",
        "",
        f"`python -m benchmarks.cli_startup --repeats {args.repeats}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}: medians of "
        f"{args.repeats} fresh processes each, interleaved, from spawn to exit.",
        "",
        "| Command | Median | Min | Ratio to `python -c pass` |",
        "|---|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| `{name}` | {median:.3f} s | {min(values):.3f} s | {median / floor:.1f}x |")
    lines += [
        "",
        "`dpl --help` loads typer, rich and the command modules only; numpy, sqlite-utils, "
        "the engine and the models load inside the commands that use them. Help is plain "
        "text: typer's rich help formatter (rich.markdown, markdown-it) took another 0.1 s "
        "(0.39 s median with it, measured idle on this machine).",
        "",
    ]
    write_results(RESULTS, "\n".join(lines))


if __name__ == "__main__":
    main()
