"""The app around the screens: welcome and import, a bad database, literal user text,
help, the command palette, persisted settings."""

from __future__ import annotations

import json

from textual.widgets import DataTable

from dpl_tui.screens.dialogs import ParametersDialog
from dpl_tui.screens.generate import GenerateScreen
from dpl_tui.screens.help import HelpScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from dpl_tui.screens.welcome import WelcomeScreen
from dpl_tui.widgets.text_view import TextView
from tests.engine.fakes import FakeEmbedder, FakeGenerator
from tests.tui.conftest import screen_text, wait_until
from user_store import Item, Review, UserStore
from user_store.config import Settings

MARKUP_TEXT = "Loud [bold red]and proud[/] pedal, [/] stray closer and [link=http://x]link[/link]."
MARKUP_TITLE = "[b]Five stars[/b] [/]"


async def test_empty_database_offers_the_sample_and_imports_it(tmp_path, make_app):
    db = tmp_path / "empty.db"
    app = make_app(db, preload_models=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        text = screen_text(app)
        assert "has no reviews yet" in text and "dpl ingest" in text and str(db) in text
        await pilot.click("#import-sample")
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen), 60)
        table = app.screen.query_one("#users", DataTable)
        await wait_until(pilot, lambda: table.row_count == 203)
    with UserStore(db) as store:
        assert store.stats().reviews == 2604


async def test_bad_database_is_reported_and_the_app_stays_up(tmp_path, make_app):
    db = tmp_path / "not-a-db.db"
    db.write_bytes(b"this is not sqlite" * 100)
    app = make_app(db, preload_models=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and str(db) in errors[0].title and "--db" in errors[0].message
        assert errors[0].message.count("--db") == 1  # the remedy is given once
        text = screen_text(app)
        assert "could not be opened" in text
        # nothing can be imported into it: no import button, key or ingest command on offer
        assert not app.screen.query_one("#import-sample").display
        assert "dpl ingest" not in text
        assert app.screen.check_action("import_sample", ()) is False  # hidden from the footer
        await pilot.press("i")
        assert isinstance(app.screen, WelcomeScreen) and app.store is None
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        assert isinstance(app.screen, WelcomeScreen)
    assert db.read_bytes().startswith(b"this is not sqlite"), "the file is left as it was"


async def test_review_markup_renders_literally(sample_db, make_app):
    with UserStore(sample_db) as store:
        store.upsert_items([Item(id="BMARKUP001", title="[red]Pedal[/red] [/]")])
        store.upsert_reviews(
            [
                Review("MARKUPUSER", item, 5.0, MARKUP_TITLE, MARKUP_TEXT, 1_400_000_000_000 + i)
                for i, item in enumerate(["BMARKUP001", "B0002E2KPC", "B0002GLDQM"])
            ]
        )
    generator = FakeGenerator(review="Generated [bold]with[/] markup [/] inside")
    app = make_app(sample_db, generator=generator)
    async with app.run_test(size=(160, 44)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        await pilot.press("slash", *"MARKUPUSER")
        table = app.screen.query_one("#users", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")  # from the search box to the table
        assert app.focused is table
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, UserScreen))
        screen = app.screen
        history = screen.query_one("#history", DataTable)
        await wait_until(pilot, lambda: history.row_count == 3)
        history.focus()
        await pilot.press("up", "up")
        view = screen.query_one("#review-text", TextView)
        await wait_until(pilot, lambda: MARKUP_TEXT in view.text)
        await pilot.pause()  # until the app is idle: the new text is rendered
        text = screen_text(app)
        assert "[red]Pedal[/red] [/]" in text
        assert "[b]Five stars[/b] [/]" in text
        assert "[bold red]and proud[/] pedal, [/] stray closer" in text
        app.set_method("none")
        await wait_until(pilot, lambda: screen.held_out is not None)
        await pilot.press("g")
        await wait_until(
            pilot, lambda: isinstance(app.screen, GenerateScreen) and app.screen.result is not None
        )
        await pilot.pause()
        assert "Generated [bold]with[/] markup [/] inside" in screen_text(app)
        assert "[bold red]and proud[/]" in screen_text(app)  # the held-out real review


async def test_help_lists_the_bindings(sample_db, make_app):
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#help-keys", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        actions = {r[2] for r in rows}
        for needed in (
            "Help",
            "Command palette",
            "Search",
            "Sort",
            "Comparisons",
            "Differences",
            "Generate",
            "Regenerate",
            "Cancel / back",
            "Export",
            "Import sample",
        ):
            assert needed in actions, needed
        assert ["Everywhere", "?", "Help"] in rows and ["", "f1", "Help"] in rows
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))


def highlighted_command(app) -> str | None:
    """The command the open palette would run on Enter, as plain text."""
    from textual.command import CommandList, CommandPalette

    if not isinstance(app.screen, CommandPalette):
        return None
    results = app.screen.query_one(CommandList)
    if results.highlighted is None:
        return None
    prompt = results.get_option_at_index(results.highlighted).prompt
    return str(getattr(prompt, "plain", prompt)).split("\n")[0]


async def test_palette_switches_method_and_it_persists(sample_db, make_app, dpl_home):
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        await pilot.press("ctrl+p")
        await pilot.press(*"method: rag")
        # Enter runs the highlighted hit: wait until the search has put this one there.
        await wait_until(pilot, lambda: highlighted_command(app) == "Switch method: rag")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.settings.method == "rag")
    assert Settings.load().method == "rag"
    assert json.loads((dpl_home / "config.json").read_text())["method"] == "rag"


async def test_palette_lists_every_command(sample_db, make_app):
    from dpl_tui.palette import DplCommands

    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        provider = DplCommands(app.screen)
        names = [name for name, _, _ in provider._commands()]
        for needed in (
            "Switch model…",
            "Switch method: dpl",
            "Switch method: none",
            "Refresh (recompute)",
            "Export…",
            "Import sample",
            "Theme…",
            "Parameters (k, n, m)…",
        ):
            assert needed in names
        hits = [hit async for hit in provider.search("import")]
        assert [h.text for h in hits] == ["Import sample"]


async def test_settings_persist_theme_and_parameters(sample_db, make_app):
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        app.theme = "nord"
        app.action_settings()
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ParametersDialog) and bool(app.screen.query("#save")),
        )
        app.screen.query_one("#param-k").value = "5"
        app.screen.query_one("#param-m").value = "0"
        await pilot.click("#save")
        assert any(n.title == "Invalid parameter" for n in app._notifications)
        app.screen.query_one("#param-m").value = "3"
        app.screen.query_one("#param-m").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
    saved = Settings.load()
    assert (saved.theme, saved.k, saved.n, saved.m) == ("nord", 5, 4, 3)
    again = make_app(sample_db, preload_models=False)
    async with again.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(again.screen, UsersScreen))
        assert again.theme == "nord"
        assert again.engine().config.k == 5 and again.engine().config.m == 3


async def test_broken_settings_file_is_reported_not_overwritten(sample_db, make_app, dpl_home):
    dpl_home.mkdir(parents=True, exist_ok=True)
    config = dpl_home / "config.json"
    config.write_text("{not json")
    app = make_app(sample_db, preload_models=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and str(config) in errors[0].message
        app.set_method("rag")
    assert config.read_text() == "{not json"


async def test_model_load_failure_is_a_notification(sample_db, make_app):
    from models import ModelNotFoundError

    def missing(_choice):
        raise ModelNotFoundError("No GGUF file at '/nowhere/model.gguf'.")

    from dpl_tui.app import DplApp

    app = DplApp(db_path=sample_db, generator_factory=missing)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.model_status == "failed to load")
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and errors[0].title == "The model failed to load"
        assert "/nowhere/model.gguf" in errors[0].message and "Switch model" in errors[0].message
        assert isinstance(app.screen, UsersScreen)
        assert "failed to load" in screen_text(app)


async def test_switch_model_dialog_checks_the_path_and_reloads(sample_db, tmp_path):
    from dpl_tui.app import DplApp
    from dpl_tui.screens.dialogs import ModelDialog

    asked: list = []

    def factory(choice):
        asked.append(choice)
        return FakeGenerator(model_id=f"fake-{len(asked)}")

    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    app = DplApp(
        db_path=sample_db, generator_factory=factory, embedder_factory=lambda _p: FakeEmbedder()
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.model_status.startswith("fake-1"))
        app.action_switch_model()
        await wait_until(
            pilot, lambda: isinstance(app.screen, ModelDialog) and app.screen.query("#model-path")
        )
        app.screen.query_one("#model-path").value = str(tmp_path / "missing.gguf")
        await pilot.click("#load")
        assert isinstance(app.screen, ModelDialog)
        assert any(n.title == "Model not found" for n in app._notifications)
        app.screen.query_one("#model-path").value = str(other)
        app.screen.query_one("#model-path").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.model_status.startswith("fake-2"))
        assert asked == [None, str(other)]
    assert Settings.load().model == str(other)


def test_focus_on_a_widget_already_removed_is_not_an_error(tmp_path, make_app, monkeypatch):
    """Focus can reach the app after its widget left the screen (the welcome screen gives way
    to the users table as the sample is imported); the app goes on, with no focus signal."""
    from textual import events
    from textual.widgets import Input

    signals = tmp_path / "signals.jsonl"
    monkeypatch.setenv("DPL_TUI_SIGNALS", str(signals))
    app = make_app(tmp_path / "empty.db", preload_models=False)
    app.on_descendant_focus(events.DescendantFocus(Input(id="search")))
    assert not signals.exists() or "focus" not in signals.read_text()
