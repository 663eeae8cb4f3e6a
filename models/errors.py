"""Errors raised by the model backends; ``str(err)`` names the model and the remedy."""

from __future__ import annotations


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
    def __init__(self, needed: int, available: int, model: str = "") -> None:
        super().__init__(
            f"The prompt needs {needed} tokens but {model or 'the model'} has {available} "
            "available. Shorten the input or load the model with a larger context (--n-ctx)."
        )
        self.needed = needed
        self.available = available


class StructuredOutputError(ModelError):
    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


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
