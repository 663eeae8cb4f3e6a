"""Fast stand-ins for the engine's unit tests: a scripted LLM that counts and records calls,
a deterministic bag-of-words embedder, and a wrapper that records what a real model is sent.

The real store and the real models are exercised by the integration tests beside these."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from models import (
    ChatMessage,
    Embedder,
    GenerationCancelled,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    StructuredOutputError,
    TextGenerator,
    TextStream,
)


def prompt_text(messages: Sequence[ChatMessage]) -> str:
    return "\n".join(m["content"] for m in messages)


class ListStream(TextStream):
    """Yields the given deltas; records whether it was closed before the end."""

    def __init__(
        self, deltas: list[str], prompt_tokens: int, on_token: Callable[[], None] | None = None
    ):
        self._deltas = iter(deltas)
        self._prompt_tokens = prompt_tokens
        self._n = 0
        self._start = time.perf_counter()
        self._on_token = on_token
        self.text = ""
        self.stats = None
        self.closed_early = False

    def __next__(self) -> str:
        if self.stats is not None:
            raise StopIteration
        try:
            delta = next(self._deltas)
        except StopIteration:
            self._finish("stop")
            raise
        self._n += 1
        self.text += delta
        if self._on_token is not None:
            self._on_token()
        return delta

    def _finish(self, reason: str) -> None:
        total = time.perf_counter() - self._start
        self.stats = GenerationStats(self._prompt_tokens, self._n, 0.0, total, 0.0, reason)

    def close(self) -> None:
        if self.stats is None:
            self.closed_early = True
            self._finish("cancelled")


class FakeGenerator(TextGenerator):
    """Scripted chat model: counts calls by kind and keeps every prompt it was sent."""

    def __init__(
        self,
        *,
        n_ctx: int = 4096,
        model_id: str = "fake-llm",
        json_ok: bool = True,
        review: str = "Solid little unit , does what it says and the price was right .",
        on_token: Callable[[], None] | None = None,
        on_json_token: Callable[[], None] | None = None,
        differences: dict[str, str] | None = None,
        json_attempts: int = 1,
    ) -> None:
        self.info = ModelInfo(model_id=model_id, path="", n_ctx=n_ctx, context_length=n_ctx)
        self.differences = differences or {
            "writing": "Plainer words, shorter sentences.",
            "emotional": "Calmer than the others.",
            "semantic": "Fewer details about the product.",
        }
        self.json_ok = json_ok
        self.json_attempts = json_attempts
        """Attempts each valid JSON answer reports having taken (a retry after a cut-off)."""
        self.review = review
        self.on_token = on_token
        self.on_json_token = on_json_token
        self.calls: Counter[str] = Counter()
        self.prompts: list[tuple[str, list[ChatMessage]]] = []
        self.streams: list[ListStream] = []

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def _kind(self, messages: Sequence[ChatMessage]) -> str:
        system = messages[0]["content"]
        if "imitate" in system:
            return "profile"
        if "how people write product reviews" in system:
            return "differences"  # the paper preset asks for free text, streamed
        return "generate"

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        kind = self._kind(messages)
        self.calls[kind] += 1
        self.prompts.append((kind, list(messages)))
        text = {
            "profile": "Writes short, upbeat reviews about gear.",
            "differences": "Plainer words and shorter sentences; calmer; fewer details.",
        }.get(kind, self.review)
        deltas = [w + " " for w in text.split()][: params.max_tokens]
        s = ListStream(deltas, self.count_tokens(messages), self.on_token)
        self.streams.append(s)
        return s

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        self.calls["differences"] += 1
        self.prompts.append(("differences", list(messages)))
        for _ in range(20):  # the "tokens" of the JSON answer
            if self.on_json_token is not None:
                self.on_json_token()
            if stop is not None and stop():
                raise GenerationCancelled("fake-llm: stopped")
        stats = GenerationStats(
            self.count_tokens(messages), 20, 0.0, 0.0, 0.0, "stop", attempts=self.json_attempts
        )
        if not self.json_ok:
            raise StructuredOutputError(
                "no valid JSON", raw="They write longer and angrier.", attempts=self.json_attempts
            )
        return dict(self.differences), stats

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


class RecordingGenerator(TextGenerator):
    """Wraps a real generator and keeps every prompt sent through it, with call counts."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner = inner
        self.info = inner.info
        self.concurrency = inner.concurrency
        self.calls: Counter[str] = Counter()
        self.prompts: list[tuple[str, list[ChatMessage]]] = []
        self.json_values: list[dict[str, Any]] = []
        """What each JSON call returned, in the order the answers arrived."""
        self.json_answers: list[tuple[list[ChatMessage], dict[str, Any]]] = []
        """Each JSON call's prompt with the value it returned."""
        self.json_fallbacks: list[str] = []
        """The text of each JSON call that gave no valid JSON (the engine keeps it as free text)."""
        self._lock = threading.Lock()

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.inner.count_tokens(messages)

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        with self._lock:
            self.calls["stream"] += 1
            self.prompts.append(("stream", list(messages)))
        return self.inner.stream(messages, params)

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        with self._lock:  # the engine may call it from several threads
            self.calls["json"] += 1
            self.prompts.append(("json", list(messages)))
        try:
            value, stats = self.inner.complete_json(
                messages, schema, params, retries=retries, stop=stop
            )
        except StructuredOutputError as err:
            with self._lock:
                self.json_fallbacks.append(err.raw)
                self.calls["json retry"] += err.attempts - 1  # every attempt made ran out
            raise
        with self._lock:
            self.json_values.append(value)
            self.json_answers.append((list(messages), value))
            if stats.attempts > 1:
                self.calls["json retry"] += stats.attempts - 1
        return value, stats

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


class FakeEmbedder(Embedder):
    """Deterministic hashed bag-of-words vectors: similar texts get similar vectors."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.info = ModelInfo(model_id="fake-embedder", path="")
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        self.embedded.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[row, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out


def drain(events: Iterator[Any]) -> list[Any]:
    return list(events)


class MemoryStore:
    """The part of ``UserStore`` the engine uses, in memory, for unit tests of the engine alone."""

    def __init__(self, reviews: Sequence[Any], items: Sequence[Any]) -> None:
        from user_store import Item

        self.items = {i.id: i for i in items}
        for r in reviews:
            self.items.setdefault(
                r.item_id, Item(id=r.item_id, title=r.item_id, metadata_missing=True)
            )
        self.reviews = {(r.user_id, r.item_id): r for r in reviews}
        self.embeddings: dict[tuple[str, tuple[str, str]], np.ndarray] = {}
        self.artifacts: dict[tuple[str, str], Any] = {}
        self.saved: list[dict[str, Any]] = []
        self.embedding_puts = 0

    def user_history(self, user_id: str) -> Any:
        from user_store import HistoryEntry, UnknownUserError, UserHistory

        mine = sorted(
            (r for r in self.reviews.values() if r.user_id == user_id),
            key=lambda r: (r.timestamp, r.item_id),
        )
        if not mine:
            raise UnknownUserError(user_id)
        return UserHistory(user_id, tuple(HistoryEntry(r, self.items[r.item_id]) for r in mine))

    def item(self, item_id: str) -> Any:
        from user_store import UnknownItemError

        if item_id not in self.items:
            raise UnknownItemError(item_id)
        return self.items[item_id]

    def reviews_of_item(self, item_id: str, *, exclude_user: str | None = None) -> list[Any]:
        return sorted(
            (
                r
                for r in self.reviews.values()
                if r.item_id == item_id and r.user_id != exclude_user
            ),
            key=lambda r: (r.timestamp, r.user_id),
        )

    def review(self, user_id: str, item_id: str) -> Any:
        return self.reviews.get((user_id, item_id))

    def get_embeddings(self, keys: Sequence[tuple[str, str]], model_id: str) -> dict:
        return {k: self.embeddings[(model_id, k)] for k in keys if (model_id, k) in self.embeddings}

    def put_embeddings(self, vectors: dict, model_id: str) -> None:
        self.embedding_puts += len(vectors)
        for k, v in vectors.items():
            self.embeddings[(model_id, k)] = np.asarray(v, dtype=np.float32)

    @staticmethod
    def _key(kind: str, key: Any) -> tuple[str, str]:
        import json
        from dataclasses import asdict

        return kind, json.dumps(asdict(key), sort_keys=True)

    def get_artifact(self, kind: str, key: Any) -> Any:
        import json

        blob = self.artifacts.get(self._key(kind, key))
        return None if blob is None else json.loads(blob)

    def put_artifact(self, kind: str, key: Any, value: Any) -> None:
        import json

        self.artifacts[self._key(kind, key)] = json.dumps(value)

    def add_generation(self, **kw: Any) -> int:
        self.saved.append(kw)
        return len(self.saved)


def review(
    user: str, item: str, text: str, *, rating: float = 4.0, title: str = "", ts: int = 0
) -> Any:
    from user_store import Review

    return Review(
        user_id=user,
        item_id=item,
        rating=rating,
        title=title or f"{item} review",
        text=text,
        timestamp=ts,
    )


class CountingEmbedder(Embedder):
    """Wraps a real embedder and records every text it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.info = inner.info
        self.dim = inner.dim
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        self.embedded.extend(texts)
        return self.inner.embed(texts, batch_size=batch_size)
