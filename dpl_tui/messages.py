"""Messages posted from worker threads to the screen that started the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.message import Message

if TYPE_CHECKING:
    from dpl_engine import GenerationResult, ProgressEvent

    from .widgets.step_times import StepTime


@dataclass
class StepProgressed(Message):
    """An engine step advanced. One still queued when the next of its run arrives is
    skipped, unless it carries an item's result (``event.value``), which must reach the
    screen."""

    bubble: ClassVar[bool] = False
    run_id: int
    event: ProgressEvent
    times: tuple[StepTime, ...] = ()
    """Every step of the run so far, timed (so a skipped message loses no time)."""

    def can_replace(self, message: Message) -> bool:
        # Textual asks the message about to be handled whether the next queued one may
        # stand in for it: ``self`` is dropped when this returns True.
        return (
            isinstance(message, StepProgressed)
            and message.run_id == self.run_id
            and self.event.value is None
        )


@dataclass
class TokensArrived(Message):
    """Text deltas of a generation, in order; never collapsed."""

    bubble: ClassVar[bool] = False
    run_id: int
    text: str


@dataclass
class GenerationEnded(Message):
    bubble: ClassVar[bool] = False
    run_id: int
    result: GenerationResult


@dataclass
class WorkFinished(Message):
    """A screen's background computation finished with ``value``."""

    bubble: ClassVar[bool] = False
    run_id: int
    value: Any


@dataclass
class WorkCancelled(Message):
    bubble: ClassVar[bool] = False
    run_id: int


@dataclass
class WorkFailed(Message):
    bubble: ClassVar[bool] = False
    run_id: int
    title: str
    error: str


@dataclass
class ModelsChanged(Message):
    """The app's model state changed (loaded, failed, switched)."""
