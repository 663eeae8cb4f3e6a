"""Start-up stays light: neither the app module nor the CLI imports torch,
sentence-transformers or llama.cpp, and the app reaches a usable users screen (and a
user's screen, which builds the engine) without them; the models load later, in a worker."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

HEAVY = ("torch", "sentence_transformers", "llama_cpp", "transformers")


def run_python(code: str, env_home) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"DPL_HOME": str(env_home), "PATH": "/usr/bin:/bin", "HOME": str(env_home)},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_app_module_and_cli_import_no_heavy_library(dpl_home):
    loaded = run_python(
        f"""
        import json, sys
        import dpl_tui.app, dpl_tui.cli
        from dpl_tui.screens import users, user, comparison, differences, generate, help
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
        """,
        dpl_home,
    )
    assert loaded == []


def test_app_reaches_users_and_user_screens_without_heavy_imports(sample_db, dpl_home):
    result = run_python(
        f"""
        import asyncio, json, sys, time
        from dpl_tui.app import DplApp
        from dpl_tui.screens.user import UserScreen

        async def main():
            app = DplApp(db_path={str(sample_db)!r}, preload_models=False)
            async with app.run_test(size=(120, 36)) as pilot:
                deadline = time.monotonic() + 60
                table = None
                while time.monotonic() < deadline:
                    await pilot.pause(0.05)
                    if type(app.screen).__name__ == "UsersScreen":
                        table = app.screen.query_one("#users")
                        if table.row_count:
                            break
                rows = table.row_count
                app.open_user("A2EZWZ8MBEDOLN")
                while time.monotonic() < deadline:
                    await pilot.pause(0.05)
                    if isinstance(app.screen, UserScreen) and app.screen.held_out is not None:
                        break
                return rows, app.screen.held_out is not None
        rows, held = asyncio.run(main())
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(json.dumps({{"rows": rows, "held": held, "heavy": heavy}}))
        """,
        dpl_home,
    )
    assert result == {"rows": 203, "held": True, "heavy": []}
