"""Save SVG screenshots of the app's main screens for the README (docs/screenshots/).

Runs ``dpl-tui`` headless at 120x36 on the bundled sample with the bundled models
(SmolLM2-135M-Instruct and all-MiniLM-L6-v2), in a throwaway DPL_HOME.

    python scripts/tui_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
USER = "ADH0O8UVJOT10"


async def until(pilot, predicate, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the app did not reach the expected state in time")
        await pilot.pause(0.1)


async def shoot(db: Path) -> None:
    from dpl_tui.app import DplApp

    app = DplApp(db_path=db)

    def save(name: str) -> None:
        app.save_screenshot(f"{name}.svg", str(OUT))
        print("wrote", OUT / f"{name}.svg")

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        await pilot.pause(0.3)
        save("welcome")
        await pilot.press("i")
        await until(pilot, lambda: type(app.screen).__name__ == "UsersScreen"
                    and app.screen.query_one("#users").row_count == 203)
        await until(pilot, lambda: not app.activity)
        app.clear_notifications()
        await pilot.pause(0.3)
        save("users")
        await pilot.press("slash", *USER, "enter", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "UserScreen"
                    and app.screen.held_out is not None)
        await pilot.pause(0.3)
        save("user")
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "ComparisonScreen"
                    and app.screen.view is not None and not app.activity)
        await pilot.pause(0.3)
        save("comparisons")
        await pilot.press("d")
        await until(pilot, lambda: type(app.screen).__name__ == "DifferencesScreen"
                    and app.screen.view is not None and not app.activity)
        await pilot.pause(0.3)
        save("differences")
        await pilot.press("g")
        await until(pilot, lambda: type(app.screen).__name__ == "GenerateScreen"
                    and app.screen.result is not None)
        await until(pilot, lambda: "ROUGE" in str(app.screen.query_one("#gen-stats").content))
        await pilot.pause(0.3)
        save("generate")
        await pilot.press("question_mark")
        await pilot.pause(0.5)
        save("help")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        os.environ["DPL_HOME"] = home
        os.environ.pop("DPL_CONFIG", None)
        sys.path.insert(0, str(REPO))
        asyncio.run(shoot(Path(home) / "dpl.db"))


if __name__ == "__main__":
    main()
