"""Errors raised by the model backends; ``str(err)`` names the model and the remedy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import GenerationStats


class ModelError(Exception):
    """Base of every error raised by ``models``."""


class ModelNotFoundError(ModelError):
    pass


class NotGGUFError(ModelError):
    pass


class CorruptModelError(ModelError):
    pass


class ModelLoadError(ModelError):
    """The model could not be loaded (out of memory, unsupported architecture, ...)."""


class ContextOverflowError(ModelError):
    def __init__(
        self,
        needed: int,
        available: int,
        model: str = "",
        larger: str = "use a model with a larger context",
    ) -> None:
        """``larger``: how to give the model a larger context (its ``larger_context``)."""
        super().__init__(
            f"The prompt needs {needed} tokens but {model or 'the model'} has {available} "
            f"available. Shorten the input or {larger}."
        )
        self.needed = needed
        self.available = available


class StructuredOutputError(ModelError):
    """No attempt gave valid JSON: ``raw`` is the last attempt's text; ``stats`` (where the
    backend reports them) the tokens and seconds of all attempts, ``attempts`` how many
    were made (a retry that could only repeat its attempt is not made)."""

    def __init__(
        self, message: str, raw: str, attempts: int = 1, stats: GenerationStats | None = None
    ) -> None:
        super().__init__(message)
        self.raw = raw
        self.attempts = attempts
        self.stats = stats


class GenerationCancelled(ModelError):
    """The caller's ``stop`` check asked a generation to end before it finished."""


class GpuFallbackWarning(UserWarning):
    """GPU offload was asked for but the model runs on the CPU; the message says why."""


class ServerError(ModelError):
    """An LLM server could not be used; the message names its URL and the remedy."""


class ServerUnreachableError(ServerError):
    """Connection refused or reset, or the server did not answer in time."""


class ServerAuthError(ServerError):
    """The server refused the API key (401) or the request (403)."""


class ServerModelError(ServerError):
    """The server does not serve the configured model name."""


class ServerContextError(ServerError):
    """The server said the prompt does not fit its context."""


class ServerStreamError(ServerError):
    """The server stopped in the middle of a streamed answer."""
