"""The dpl Textual app: users, one user's history and target, comparison users,
differences, and a streamed personalized review beside the real one.

Start-up touches only SQLite: the models load in a background thread, and the
engine (with its scientific libraries) is imported the first time work needs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from .backend import (
    EmbedderFactory,
    EngineFactory,
    GeneratorFactory,
    Jobs,
    ModelHolder,
    Session,
    build_real_engine,
)
from .messages import ModelsChanged
from .palette import DplCommands
from .runtime import ModelRuntime, ModelState


@dataclass
class _Activity(Message):
    text: str


@dataclass
class _SampleImported(Message):
    report: object = None
    error: BaseException | None = None


@dataclass
class _Preparing(Message):
    state: object
    """A preparation.PrepState."""


@dataclass
class _Notice(Message):
    text: str
    title: str
    severity: str


if TYPE_CHECKING:
    from dpl_engine import Engine
    from user_store import UserStore

    from .export import ExportRequest
    from .screens.dialogs import Parameters


class DplApp(App[None]):
    """``DplApp(db_path, model).run()``"""

    CSS_PATH = "app.tcss"
    TITLE = "dpl"
    SUB_TITLE = "difference-aware personalization"
    COMMANDS = App.COMMANDS | {DplCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
        Binding("ctrl+e", "export", "Export"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    model_status: reactive[str] = reactive("not loaded")
    gpu_status: reactive[str] = reactive("unknown until a model loads")
    activity: reactive[str] = reactive("")
    preparing: reactive[str] = reactive("")
    """What background preparation is doing ('' when idle)."""

    def __init__(
        self,
        db_path: str | Path | None = None,
        model: str | None = None,
        *,
        settings_path: Path | None = None,
        generator_factory: GeneratorFactory | None = None,
        embedder_factory: EmbedderFactory | None = None,
        engine_factory: EngineFactory = build_real_engine,
        preload_models: bool = True,
        prepare_ahead: bool | None = None,
    ) -> None:
        """``prepare_ahead``: compute the open user's differences in the background (default:
        $DPL_PREPARE_AHEAD when set, 0 or 1, else the ``prepare_ahead`` setting)."""
        super().__init__()
        from user_store import StoreError, locations
        from user_store.config import Settings

        self.db_path = Path(db_path) if db_path is not None else locations.default_db_path()
        self.settings_path = settings_path
        self.settings_problem: str | None = None
        try:
            self.settings = Settings.load(settings_path)
        except StoreError as err:
            self.settings = Settings()
            self.settings_problem = str(err)
        self.runtime = ModelRuntime(
            self.settings,
            model,
            post=self.post_message,
            engine_factory=engine_factory,
            generator_factory=generator_factory,
            embedder_factory=embedder_factory,
        )
        self._preload = preload_models
        self.store: UserStore | None = None
        self.store_problem: str | None = None
        self.jobs = Jobs()
        from .preparation import Preparer

        if prepare_ahead is None:
            flag = os.environ.get("DPL_PREPARE_AHEAD")
            prepare_ahead = self.settings.prepare_ahead if flag is None else flag != "0"
        self.preparer = Preparer(
            self.engine,
            self.jobs,
            lambda state: self.post_message(_Preparing(state)),
            enabled=prepare_ahead,
        )
        self.jobs.on_change = self.preparer.poke
        self.session: Session | None = None
        self._signals = os.environ.get("DPL_TUI_SIGNALS") or None

    # -- states announced to an outside driver --------------------------------------
    def signal(self, state: str, **detail: str | int) -> None:
        """Announce that the app reached ``state`` (a screen's data shown, focus moved).

        When $DPL_TUI_SIGNALS names a file, one JSON line is appended to it per state,
        so a program driving the app through a terminal (its tests, a script) can wait
        for the state itself instead of guessing how long it takes. Otherwise a no-op."""
        if self._signals is None:
            return
        line = json.dumps({"state": state, **detail}, ensure_ascii=False)
        try:
            with open(self._signals, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError:
            self._signals = None  # an unwritable file must not break the app

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        from textual.dom import NoScreen

        if self._signals is None:
            return
        widget = event.widget
        try:
            screen = widget.screen
        except NoScreen:  # removed before the event arrived (its screen was switched away)
            return
        name = widget.id or type(widget).__name__
        self.signal("focus", screen=type(screen).__name__, widget=name)

    # -- start-up ----------------------------------------------------------------
    def on_mount(self) -> None:
        from .screens.users import UsersScreen
        from .screens.welcome import WelcomeScreen

        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self.watch(self, "theme", self._theme_changed, init=False)
        if self.settings_problem:
            self.notify(
                f"{self.settings_problem} Using defaults; settings are not saved until fixed.",
                title="Settings file unreadable",
                severity="error",
                markup=False,
            )
        if self.open_store():
            assert self.store is not None
            empty = self.store.stats().reviews == 0
            self.push_screen(WelcomeScreen() if empty else UsersScreen())
        else:
            self.push_screen(WelcomeScreen())
        if self._preload:
            self.load_models()

    def open_store(self) -> bool:
        from user_store import StoreError, UserStore

        try:
            self.store = UserStore(self.db_path)
        except StoreError as err:
            self.store = None
            self.store_problem = str(err)
            remedy = "" if "--db" in str(err) else " Pass another file with --db."
            self.notify(
                f"{err}{remedy}",
                title=f"Cannot open the database {str(self.db_path)!r}",
                severity="error",
                timeout=15,
                markup=False,
            )
            return False
        self.store_problem = None
        return True

    # -- models and engine ---------------------------------------------------------
    @property
    def models(self) -> ModelHolder:
        return self.runtime.models

    def load_models(self) -> None:
        """Load the generator, then the embedder, without blocking the app."""
        self.runtime.load()

    @property
    def loading_models(self) -> bool:
        return self.runtime.loading

    def on_unmount(self) -> None:
        # Work waiting for a model that is still loading gives up, so the exit need not wait;
        # background preparation stops (waiting briefly for the call in flight to return).
        self.preparer.close()
        self.runtime.close()

    def engine(self) -> Engine:
        """The engine over the store and the app's models (built on first use, any thread)."""
        from user_store import StoreError

        if self.store is None:
            raise StoreError(self.store_problem or "No database is open.")
        return self.runtime.engine(self.store)

    def reset_engine(self) -> None:
        self.runtime.reset_engine()
        self.preparer.restart()

    def switch_model(self, choice: str | None, adapter: str | None = None) -> None:
        self.jobs.cancel_all()
        self.settings.model = choice
        self.settings.adapter = adapter
        self.save_settings()
        self.runtime.switch(choice)
        self.preparer.restart()
        self.model_status = "not loaded"
        self.load_models()

    # -- settings --------------------------------------------------------------------
    def save_settings(self) -> None:
        if self.settings_problem:
            return
        try:
            self.settings.save(self.settings_path)
        except OSError as err:
            self.notify(str(err), title="Could not save settings", severity="error", markup=False)

    def _theme_changed(self, theme: str) -> None:
        if self.settings.theme != theme:
            self.settings.theme = theme
            self.save_settings()

    def set_method(self, method: str) -> None:
        from .screens.generate import GenerateScreen

        self.settings.method = method
        self.save_settings()
        if isinstance(self.screen, GenerateScreen):
            self.screen.select_method(method)
        self.notify(f"Generation method: {method}", title="Method")

    def set_preset(self, preset: str) -> None:
        self.jobs.cancel_all()
        self.settings.preset = preset
        self.save_settings()
        self.reset_engine()
        self.notify(f"Preset: {preset}", title="Preset")

    def set_parameters(self, values: Parameters) -> None:
        self.settings.k, self.settings.n, self.settings.m = values.k, values.n, values.m
        self.save_settings()
        self.reset_engine()

    # -- users -------------------------------------------------------------------------
    def open_user(self, user_id: str) -> None:
        from .screens.user import UserScreen

        if self.session is None or self.session.user_id != user_id:
            self.jobs.cancel_all()
            self.session = Session(user_id)
        self.push_screen(UserScreen(user_id))
        self.preparer.open(user_id)

    # -- sample ------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="import", exit_on_error=False, description="importing")
    def import_sample(self) -> None:
        from user_store import StoreError

        self.post_message(_Activity("importing the bundled sample"))
        try:
            if self.store is None:
                raise StoreError(self.store_problem or "No database is open.")
            from user_store.ingest import ingest_sample

            report = ingest_sample(self.store)
        except Exception as err:
            self.post_message(_SampleImported(error=err))
            return
        self.post_message(_SampleImported(report=report))

    # -- actions ------------------------------------------------------------------------
    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        refresh = getattr(self.screen, "refresh_work", None)
        if callable(refresh):
            refresh(refresh=True)
        else:
            self.notify("Nothing to recompute on this screen.", title="Refresh")

    def action_import_sample(self) -> None:
        self.import_sample()

    def action_switch_model(self) -> None:
        from .screens.dialogs import ModelChoice, ModelDialog

        def chosen(choice: ModelChoice | None) -> None:
            if choice is not None:
                self.switch_model(choice.model or None, choice.adapter or None)

        self.push_screen(ModelDialog(self.settings), chosen)

    def action_settings(self) -> None:
        from .screens.dialogs import ParametersDialog

        def chosen(values: Parameters | None) -> None:
            if values is not None:
                self.set_parameters(values)
                self.notify(f"k={values.k}, n={values.n}, m={values.m}", title="Parameters saved")

        self.push_screen(ParametersDialog(self.settings), chosen)

    def action_export(self) -> None:
        from .screens.dialogs import ExportDialog

        session = self.session
        if session is None or session.target is None:
            self.notify(
                "Open a user and choose a target first.",
                title="Nothing to export",
                severity="warning",
            )
            return
        self.push_screen(ExportDialog(session.user_id), self._export_chosen)

    def _export_chosen(self, request: ExportRequest | None) -> None:
        if request is not None:
            self.export(request)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False, description="exporting")
    def export(self, request: ExportRequest) -> None:
        from .export import bundle_from_session, write_export

        session = self.session
        assert session is not None
        try:
            stored = self.store.generations(session.user_id) if self.store is not None else []
            path = write_export(bundle_from_session(session, stored), request)
        except Exception as err:
            self.post_message(_Notice(f"{err}", "Export failed", "error"))
            return
        self.post_message(_Notice(f"Wrote {path}", "Exported", "information"))

    # -- messages from workers ---------------------------------------------------------
    @on(ModelState)
    def _model_state(self, message: ModelState) -> None:
        if message.load != self.runtime.load_count:
            return
        if message.status is not None:
            self.model_status = message.status
        if message.gpu is not None:
            self.gpu_status = message.gpu
        if message.activity is not None:
            self.activity = message.activity
        if message.error is not None:
            what = message.what
            self.notify(
                f"{message.error} Choose another {what} (Ctrl+P, Switch model) or check its path.",
                title=f"The {what} failed to load",
                severity="error",
                timeout=15,
                markup=False,
            )
            if what == "model":
                self.model_status = "failed to load"
        self.post_message(ModelsChanged())

    @on(_Activity)
    def _activity(self, message: _Activity) -> None:
        self.activity = message.text

    @on(_SampleImported)
    def _sample_imported(self, message: _SampleImported) -> None:
        from .screens.users import UsersScreen
        from .screens.welcome import WelcomeScreen

        self.activity = ""
        if message.error is not None:
            self.notify(
                str(message.error),
                title="Importing the sample failed",
                severity="error",
                markup=False,
            )
            if isinstance(self.screen, WelcomeScreen):
                self.screen.import_failed(str(message.error))
            return
        self.notify(_describe_import(message.report), title="Sample imported", markup=False)
        if isinstance(self.screen, WelcomeScreen):
            self.switch_screen(UsersScreen())
        elif isinstance(self.screen, UsersScreen):
            self.screen.reload()

    @on(_Preparing)
    def _preparing(self, message: _Preparing) -> None:
        state = message.state
        self.preparing = state.text  # type: ignore[attr-defined]
        if state.target:  # type: ignore[attr-defined]
            self.signal("target-prepared", user=state.user_id)  # type: ignore[attr-defined]
        if state.done:  # type: ignore[attr-defined]
            self.signal("prepared", user=state.user_id)  # type: ignore[attr-defined]

    @on(_Notice)
    def _notice(self, message: _Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, markup=False)


def _describe_import(report: object) -> str:
    files = getattr(report, "files", None) or [report]
    totals = {
        name: sum(getattr(f, name, 0) or 0 for f in files)
        for name in ("read", "inserted", "updated", "rejected")
    }
    return ", ".join(f"{value:,} {name}" for name, value in totals.items())
