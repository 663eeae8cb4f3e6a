"""Background preparation: while a person reads a user's history, the app computes what
that user's screens will ask for (``Engine.prepare``): first the comparison sets, the
differences and the profile of the default target, then the differences of the user's
other comparable items, most relevant first.

It yields to the person. Whenever work the person asked for is in flight (any token in
``Jobs``), or nobody's user is open, preparation is stopped within a token (what the
engine finished is cached, a half-made answer never is) and picked up again, from the
cache, once the person's work is over. One user at a time, in one daemon thread.

Quitting stops it and waits for the call in flight to return (a token, or one batch of a
prompt: well under a second on a CPU), at most ``close_wait_s``: a thread still inside
llama.cpp when the interpreter shuts down takes the whole process down with it
("terminate called without an active exception"). A call that does not listen to the stop
is left behind after that wait, so quitting never hangs on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpl_engine import CancelToken, Engine, ProgressEvent

    from .backend import Jobs


@dataclass(frozen=True)
class PrepState:
    """What the status bar says about preparation."""

    user_id: str | None
    text: str
    """'' when nothing is being prepared."""
    done: bool = False
    """The user's items are all prepared under the current engine."""
    target: bool = False
    """The default target has just been prepared (the other items come next)."""


STEPS = {
    "retrieve": "retrieving",
    "embed": "comparison users",
    "compare": "comparison users",
    "differences": "differences",
    "profile": "profile",
}


class Preparer:
    """Prepares the open user in the background whenever the person's work allows."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        jobs: Jobs,
        report: Callable[[PrepState], None],
        *,
        enabled: bool = True,
        close_wait_s: float = 10.0,
    ) -> None:
        self._engine = engine
        self.close_wait_s = close_wait_s
        self._jobs = jobs
        self._report = report
        self.enabled = enabled
        self._lock = threading.Lock()
        self._user: str | None = None
        self._running: tuple[str, CancelToken, threading.Thread] | None = None
        self._done: set[str] = set()
        """Users whose preparation finished under the current engine."""
        self._target_ready: set[str] = set()
        """Users whose default target is prepared (their other items may not be yet)."""
        self._closed = False

    # -- what the app tells it ---------------------------------------------------------
    def open(self, user_id: str) -> None:
        """The person is looking at ``user_id``: prepare it when nothing else runs."""
        with self._lock:
            self._user = user_id
        self.poke()

    def leave(self) -> None:
        """No user is open (the users list is shown): stop."""
        with self._lock:
            self._user = None
        self.poke()
        self._report(PrepState(None, ""))

    def restart(self) -> None:
        """The engine changed (model, preset, parameters): start over under the new one."""
        self._stop()
        with self._lock:
            self._done.clear()
            self._target_ready.clear()
        self.poke()

    def close(self) -> None:
        """The app is quitting: stop, never start again, and let the call in flight return
        (at most ``close_wait_s``)."""
        with self._lock:
            self._closed = True
            running = self._running
        self._stop()
        if running is not None and running[2] is not threading.current_thread():
            running[2].join(self.close_wait_s)

    def is_prepared(self, user_id: str) -> bool:
        """Everything of the user is prepared: the default target and the other items."""
        with self._lock:
            return user_id in self._done

    def target_ready(self, user_id: str) -> bool:
        """What the user's screens ask for first (the default target) is prepared."""
        with self._lock:
            return user_id in self._target_ready

    @property
    def running_for(self) -> str | None:
        with self._lock:
            return self._running[0] if self._running is not None else None

    def poke(self) -> None:
        """Start or stop, so that preparation runs exactly when it should."""
        with self._lock:
            user = self._user
            want = self.enabled and not self._closed and user is not None
            want = want and not self._jobs.busy
            running = self._running
        if running is not None and (not want or running[0] != user):
            self._stop()
            running = None
        if want and running is None and user is not None:
            self._start(user)

    # -- the thread ----------------------------------------------------------------------
    def _stop(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            running[1].cancel()

    def _start(self, user: str) -> None:
        from dpl_engine import CancelToken

        try:
            engine = self._engine()
        except Exception:  # noqa: BLE001 - no store: nothing to prepare
            return
        token = CancelToken()
        with self._lock:
            if user in self._done or self._running is not None or self._closed:
                return
            thread = threading.Thread(
                target=self._run, args=(engine, user, token), name="dpl-prepare", daemon=True
            )
            self._running = (user, token, thread)
        thread.start()

    def _run(self, engine: Engine, user: str, token: CancelToken) -> None:
        from dpl_engine import Cancelled, TokenEvent

        phase = ["default target"]

        def progress(event: ProgressEvent) -> None:
            if isinstance(event.value, TokenEvent):
                return  # the profile being written: the status bar says "profile" already
            if event.step == "compare" and event.i == 0 and "other items" in event.detail:
                phase[0] = "other items"
                with self._lock:
                    self._target_ready.add(user)
                self._report(PrepState(user, f"{user}: default target ready", target=True))
            label = STEPS.get(event.step, event.step)
            count = f" {event.i}/{event.n}" if event.n > 1 else ""
            self._report(PrepState(user, f"{user}: {label}{count} ({phase[0]})"))

        try:
            target = engine.held_out_target(user)
            prepared = engine.prepare(target, rest=True, progress=progress, cancel=token)
        except Cancelled:
            return
        except Exception as err:  # noqa: BLE001 - shown in the status bar, never raised
            if not token.cancelled:  # an error from a stopped call is the stop itself
                state = PrepState(user, f"{user}: not prepared ({err})")
                self._finish(user, token, engine, state)
            return
        finally:
            if token.cancelled:
                self._finish(user, token, None, PrepState(None, ""))
        text = f"{user}: {prepared.items} items ready"
        self._finish(user, token, engine, PrepState(user, text, done=True))

    def _finish(self, user: str, token: CancelToken, engine: Any, state: PrepState) -> None:
        """The thread's last word; ``engine`` is None when it was stopped before the end."""
        with self._lock:
            if self._running is not None and self._running[1] is token:
                self._running = None
            if engine is not None:
                self._done.add(user)
                self._target_ready.add(user)
        self._report(state)
