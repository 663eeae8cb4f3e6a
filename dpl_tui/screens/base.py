"""What the screens that run engine steps share: one run at a time, progress,
cancellation when the screen goes away, and errors shown as notifications."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import on
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from ..messages import StepProgressed, WorkCancelled, WorkFailed, WorkFinished
from ..widgets.step_progress import StepProgress, describe
from ..widgets.step_times import StepClock, StepTimes

if TYPE_CHECKING:
    from dpl_engine import CancelToken, ProgressEvent, Target

    from ..app import DplApp


def error_title(err: BaseException, doing: str) -> str:
    """'Model failed while generating' and the like: names what failed."""
    from models import ModelError
    from user_store import StoreError

    if isinstance(err, ModelError):
        what = "Model error"
    elif isinstance(err, StoreError):
        what = "Database error"
    elif type(err).__module__.startswith("dpl_engine"):
        what = "Engine error"
    else:
        what = f"Unexpected {type(err).__name__}"
    return f"{what} while {doing}"


def is_cancellation(err: BaseException) -> bool:
    return type(err).__name__ == "Cancelled" and type(err).__module__.startswith("dpl_engine")


class DplScreen(Screen):
    """Typed access to the app."""

    @property
    def dpl(self) -> DplApp:
        return self.app  # type: ignore[return-value]


class EngineScreen(DplScreen):
    """Runs one computation for a target in a thread worker; a new run supersedes the old."""

    DOING = "computing"
    BINDINGS = [
        Binding("escape", "back", "Back / cancel"),
        Binding("r", "recompute", "Recompute"),
    ]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.run_id = 0
        self._token: CancelToken | None = None
        self.running = False
        self._shown = ""
        """The progress line last shown, so repeats are not redrawn."""

    # -- starting and stopping ---------------------------------------------------
    def start(self, compute: Callable[..., Any], *args: Any) -> None:
        """Run ``compute(progress, token, run_id, *args)`` in a worker.

        Its value arrives in ``show``."""
        self.cancel_run()
        self.run_id += 1
        self._shown = ""
        self._token = self.dpl.jobs.start()
        self.running = True
        self._run(self.run_id, self._token, compute, args)

    def cancel_run(self) -> bool:
        if self._token is not None and self.running:
            self._token.cancel()
            return True
        return False

    def on_unmount(self) -> None:
        if self._token is not None:
            self._token.cancel()

    def _run(
        self, run_id: int, token: CancelToken, compute: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.run_worker(
            lambda: self._work(run_id, token, compute, args),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group="engine",
            description=self.DOING,
        )

    def _work(
        self, run_id: int, token: CancelToken, compute: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        worker = get_current_worker()
        clock = StepClock()

        def progress(event: ProgressEvent) -> None:
            if worker.is_cancelled:
                token.cancel()
            self.post_message(StepProgressed(run_id, event, clock.saw(event)))

        try:
            value = compute(progress, token, run_id, *args)
        except Exception as err:
            if is_cancellation(err) or token.cancelled:
                self.post_message(WorkCancelled(run_id))
            else:
                self.post_message(WorkFailed(run_id, error_title(err, self.DOING), str(err)))
            return
        finally:
            self.dpl.jobs.finish(token)
        if token.cancelled:
            self.post_message(WorkCancelled(run_id))
        else:
            self.post_message(WorkFinished(run_id, value))

    # -- results -----------------------------------------------------------------
    def show(self, value: Any) -> None:
        raise NotImplementedError

    def _current(self, run_id: int) -> bool:
        return run_id == self.run_id

    @on(StepProgressed)
    def _progressed(self, message: StepProgressed) -> None:
        if not self._current(message.run_id):
            return
        for times in self.query(StepTimes):
            times.show(message.times)
        text = describe(message.event)
        if text == self._shown:
            return  # a delta of text being written: its step is on the line already
        self._shown = text
        self.query_one(StepProgress).show(message.event)
        self.dpl.activity = f"{text} · {self.target.user_id}"

    @on(WorkFinished)
    def _finished(self, message: WorkFinished) -> None:
        if not self._current(message.run_id):
            return
        self.running = False
        self.dpl.activity = ""
        self.query_one(StepProgress).message("Done.")
        self.show(message.value)

    @on(WorkCancelled)
    def _cancelled(self, message: WorkCancelled) -> None:
        if not self._current(message.run_id):
            return
        self.running = False
        self.dpl.activity = ""
        self.query_one(StepProgress).message("Cancelled. Press r to run it again.")
        for times in self.query(StepTimes):
            times.stop("cancelled")

    @on(WorkFailed)
    def _failed(self, message: WorkFailed) -> None:
        if not self._current(message.run_id):
            return
        self.running = False
        self.dpl.activity = ""
        self.query_one(StepProgress).message(f"Failed: {message.error}")
        for times in self.query(StepTimes):
            times.stop("failed")
        self.notify(message.error, title=message.title, severity="error", markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Errors are caught inside ``_work``; this catches anything that escaped it.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            self.running = False
            self.notify(
                str(err), title=error_title(err, self.DOING), severity="error", markup=False
            )

    # -- keys ----------------------------------------------------------------------
    def action_back(self) -> None:
        if self.cancel_run():
            self.query_one(StepProgress).message("Cancelling…")
            return
        self.dismiss()

    def action_recompute(self) -> None:
        self.refresh_work(refresh=True)

    def refresh_work(self, refresh: bool = False) -> None:
        raise NotImplementedError
