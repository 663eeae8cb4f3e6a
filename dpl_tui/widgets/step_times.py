"""Per step of a run, how long it took and whether it came from the cache, so a person
learns where the wait goes.

The clock runs in the worker thread, beside the engine: it sees every event, while the
screen may skip progress messages that a later one replaced. Steps run one after another,
so a step starts when the one before it ended (the first when the run started).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from dpl_engine import ProgressEvent

NAMES = {
    "retrieve": "retrieval",
    "compare": "comparison users",
    "measure": "measured",
    "differences": "differences",
    "profile": "profile",
    "generate": "generation",
}
PART_OF = {"embed": "compare"}
"""Steps timed as part of another (embedding happens while comparison users are chosen)."""
NO_MODEL = {"retrieve", "measure"}
"""Steps that are never cached: they are counted again each time, without a model."""


def now() -> float:
    """The clock (monotonic seconds); tests that need the same line every run replace it."""
    return time.monotonic()


@dataclass(frozen=True)
class StepTime:
    step: str
    started: float
    ended: float | None
    """None while the step runs."""
    done: int = 0
    total: int = 0
    cached: int = 0
    """Results of the step read from the cache."""
    computed: int = 0
    """Results of the step computed in this run."""


class StepClock:
    """Turns a run's progress events into a StepTime per step, in order."""

    def __init__(self) -> None:
        self._start = now()
        self._steps: dict[str, StepTime] = {}

    def saw(self, event: ProgressEvent) -> tuple[StepTime, ...]:
        """The steps so far, after ``event``."""
        from dpl_engine import TokenEvent

        if isinstance(event.value, TokenEvent):
            return tuple(self._steps.values())
        t = now()
        step = PART_OF.get(event.step, event.step)
        known = self._steps.get(step)
        if known is None:
            before = [s for s in self._steps.values() if s.step != step]
            start = before[-1].ended if before and before[-1].ended is not None else t
            known = StepTime(step, self._start if not before else start, None)
        if step == event.step:
            if event.i > 0:  # a result arrived (a step's opening event, 0 of n, carries none)
                known = replace(
                    known,
                    cached=known.cached + event.cached,
                    computed=known.computed + (not event.cached),
                )
            known = replace(known, done=event.i, total=event.n)
            if event.i >= event.n:
                known = replace(known, ended=t)
        self._steps[step] = known
        return tuple(self._steps.values())


def seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    return f"{minutes} min {rest} s"


def line(times: tuple[StepTime, ...], *, stopped: str = "", at: float | None = None) -> Text:
    """'retrieval 0.0 s · comparison users 3/3 0.4 s, cached · ...'; a step still running
    says how long so far, or ``stopped`` ("cancelled") once the run ended without it."""
    at = now() if at is None else at
    out = Text()
    for k, s in enumerate(times):
        if k:
            out.append(" · ")
        out.append(NAMES.get(s.step, s.step), style="bold")
        if s.total > 1 and s.step not in NO_MODEL:
            out.append(f" {s.done}/{s.total}")
        if s.ended is not None:
            out.append(f" {seconds(s.ended - s.started)}")
        elif stopped:
            out.append(f" {stopped} after {seconds(at - s.started)}", style="italic")
            continue
        else:
            out.append(f" {seconds(at - s.started)} so far…", style="italic")
            continue
        if s.step in NO_MODEL:
            note = "no model"
        elif s.cached and s.computed:
            note = f"{s.cached} cached, {s.computed} computed"
        elif s.cached:
            note = "cached"
        elif s.computed:
            note = "computed"
        else:
            note = ""
        if note:
            out.append(f", {note}")
    return out


class StepTimes(Static):
    """One line under the step's progress: each step of the run, its time, its cache."""

    DEFAULT_CSS = """
    StepTimes {
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.times: tuple[StepTime, ...] = ()
        self.stopped = ""

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)  # the running step's time keeps counting

    def show(self, times: tuple[StepTime, ...]) -> None:
        if times == self.times and not self.stopped:
            return  # nothing new (a delta of text being written)
        self.times, self.stopped = times, ""
        self.update(line(times))

    def stop(self, why: str) -> None:
        """The run ended early (``why``: "cancelled", "failed"); unfinished steps say so."""
        self.stopped = why
        self.update(line(self.times, stopped=why))

    def _tick(self) -> None:
        if not self.stopped and any(s.ended is None for s in self.times):
            self.update(line(self.times))

    @property
    def text(self) -> str:
        return str(self.render())
