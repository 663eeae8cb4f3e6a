"""The import contracts of pyproject.toml hold: dpl_tui -> dpl_engine -> user_store, models;
inside the engine tuning -> evaluation -> engine -> method; command modules stand alone; nothing
below the app imports textual (checked by import-linter on the real sources)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert len(contracts) >= 4
    assert f"{len(contracts)} kept, 0 broken" in done.stdout
