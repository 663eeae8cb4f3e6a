"""What the engine needs from a language model and an embedder.

CONTRACT: the engine codes against these classes only; backends (llama.cpp,
sentence-transformers) subclass them, and tests may use fakes that do too.
Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ChatMessage = dict[str, str]
"""{"role": "system" | "user" | "assistant", "content": "..."}"""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    """Fixed seed for reproducible sampling; None draws a fresh one."""


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float
    total_s: float
    tokens_per_s: float
    """Completion tokens per second, measured from the first token."""
    finish_reason: str
    """'stop', 'length' or 'cancelled'."""
    attempts: int = 1
    """Generations this result took: a JSON call that retried holds the tokens and seconds of
    every attempt (time to first token and finish reason are its last attempt's)."""


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    """Stable id used as a cache key (file name plus size, or the embedder's name)."""
    path: str
    size_bytes: int = 0
    quantization: str = ""
    context_length: int = 0
    """The model's training context."""
    n_ctx: int = 0
    """The context actually allocated."""
    gpu_offload_supported: bool = False
    gpu_layers: int = 0
    device: str = "CPU"
    threads: int = 0
    """CPU threads llama.cpp runs on in this process; 0 when the model runs elsewhere."""


class TextStream:
    """An iterator of text deltas. ``stats`` is set once the stream is exhausted or closed.

    Closing early (``close()`` or breaking out of the loop and dropping the
    stream) cancels the generation; the model is free for the next request at once.
    """

    stats: GenerationStats | None = None
    text: str = ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TextGenerator:
    """A chat model. One generation at a time: concurrent callers wait on a lock."""

    info: ModelInfo
    can_stream: bool = True
    supports_json_schema: bool = True
    stops_while_waiting: bool = False
    """Whether ``stream`` takes ``stop=`` (a callable asked while no token has come yet), so a
    cancel also reaches a call still waiting for a busy server."""
    concurrency: int = 1
    """Calls this backend serves at once; the engine runs up to this many in parallel.
    In-process llama.cpp serves one (its lock queues the rest); a server serves its slots."""

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def larger_context(self) -> str:
        """How a person gives this model a larger context: the remedy context errors name."""
        return "use a model with a larger context"

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens these messages take after the chat template is applied."""
        raise NotImplementedError

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        """Raises ContextOverflowError if the prompt plus ``max_tokens`` cannot fit."""
        raise NotImplementedError

    def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> tuple[str, GenerationStats]:
        with self.stream(messages, params) as s:
            for _ in s:
                pass
        assert s.stats is not None
        return s.text, s.stats

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        """Generation constrained to ``schema``; returns the parsed, validated object.

        ``stop`` is asked after every token; when it returns True the generation ends
        at once and GenerationCancelled is raised. Raises StructuredOutputError
        (carrying the raw text) when no attempt validates."""
        raise NotImplementedError


class Embedder:
    info: ModelInfo
    dim: int

    @property
    def model_id(self) -> str:
        return self.info.model_id

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """float32 array of shape (len(texts), dim), rows L2-normalised."""
        raise NotImplementedError
