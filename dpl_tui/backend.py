"""What the app keeps between screens: the models (loaded lazily, once), the engine
built on them, and the results of the user being inspected.

Everything here is plain Python and thread-safe where workers touch it; no widgets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpl_engine import (
        CancelToken,
        ComparisonSet,
        Differences,
        Engine,
        EngineConfig,
        GenerationResult,
        MeasuredDifferences,
        Profile,
        Retrieved,
        Target,
    )
    from models import Embedder, TextGenerator
    from user_store import UserStore

GeneratorFactory = Callable[[str | None], "TextGenerator"]
EmbedderFactory = Callable[[str | None], "Embedder"]
"""Given the model choice: a server entry may name its own embedding model."""
EngineFactory = Callable[..., "Engine"]


def load_real_generator(choice: str | None) -> TextGenerator:
    """A GGUF file, a registered name or a registered server (see ``loading``)."""
    from .loading import load_resolved

    return load_resolved(choice)


def load_real_embedder(choice: str | None) -> Embedder:
    """The embedder that goes with model ``choice`` under the saved settings."""
    from user_store.config import Settings

    from .loading import embedder_factory

    return embedder_factory(Settings.load(), choice)()


def build_real_engine(
    store: UserStore,
    generator: Callable[[], TextGenerator],
    embedder: Callable[[], Embedder],
    config: EngineConfig,
    analyst: Callable[[], TextGenerator] | None = None,
    personal: Callable[[str], TextGenerator | None] | None = None,
) -> Engine:
    """``analyst``: the model that reads users when an adapter writes the reviews;
    ``personal``: a user's own adapter on top of it, when one was kept."""
    from dpl_engine import Engine

    return Engine(store, generator, embedder, config, analyst=analyst, personal=personal)


class ModelHolder:
    """Loads the generator and the embedder at most once each, from any thread."""

    def __init__(
        self,
        model: str | None,
        *,
        generator_factory: GeneratorFactory = load_real_generator,
        embedder_factory: EmbedderFactory = load_real_embedder,
        embedder_source: Callable[[str | None], str] = lambda _choice: "local",
    ) -> None:
        self.model_choice = model
        self._generator_factory = generator_factory
        self._embedder_factory = embedder_factory
        self._embedder_source = embedder_source
        self._generator: TextGenerator | None = None
        self._embedder: Embedder | None = None
        self._generator_lock = threading.Lock()
        self._embedder_lock = threading.Lock()
        self._closing = threading.Event()

    @property
    def loaded_generator(self) -> TextGenerator | None:
        return self._generator

    def close(self) -> None:
        """The app is closing: callers still waiting for another thread's load give up."""
        self._closing.set()

    def _hold(self, lock: threading.Lock) -> None:
        # A load cannot be interrupted, but waiting for one can: a worker blocked here would
        # otherwise keep the app from exiting until the load finished.
        while not lock.acquire(timeout=0.1):
            if self._closing.is_set():
                from models import ModelError

                raise ModelError("The app is closing; the wait for the model was given up.")

    def generator(self) -> TextGenerator:
        self._hold(self._generator_lock)
        try:
            if self._generator is None:
                self._generator = self._generator_factory(self.model_choice)
            return self._generator
        finally:
            self._generator_lock.release()

    def embedder(self) -> Embedder:
        self._hold(self._embedder_lock)
        try:
            if self._embedder is None:
                self._embedder = self._embedder_factory(self.model_choice)
            return self._embedder
        finally:
            self._embedder_lock.release()

    def switch_model(self, choice: str | None) -> None:
        """Forget the loaded generator; the next use loads ``choice``.

        The embedder is kept unless ``choice`` embeds elsewhere (a server entry with its own
        embedding model, or back to the local one), so a switch does not reload it for nothing."""
        with self._generator_lock, self._embedder_lock:
            if self._embedder_source(choice) != self._embedder_source(self.model_choice):
                self._embedder = None
            self.model_choice = choice
            old, self._generator = self._generator, None
        close = getattr(old, "close", None)
        if callable(close):
            close()


def model_label(generator: TextGenerator) -> str:
    info = generator.info
    name = Path(info.path).name if info.path else info.model_id
    adapter = getattr(generator, "adapter", None)
    if adapter is not None:
        name += f" + adapter {adapter.meta.get('name') or Path(adapter.path).stem}"
    extra = f", ctx {info.n_ctx}" if info.n_ctx else ""
    return f"{name}{extra}"


def gpu_label(generator: TextGenerator) -> str:
    """Whether layers are offloaded to a GPU, as the loaded model reports it, and when they
    are, the flash attention and prompt batch size that go with it."""
    url = getattr(generator, "url", None)
    if isinstance(url, str):
        return f"whatever the server at {url} uses"
    offload = getattr(generator, "offload", None)
    if offload is not None:
        if offload.active:
            total = f"/{offload.layers_total}" if offload.layers_total else ""
            label = f"on, {offload.layers_offloaded}{total} layers on {offload.device_name}"
            settings = getattr(generator, "load_settings", None)
            if settings is not None:
                flash = "on" if settings.flash_attn else "off"
                label += f" (flash attention {flash}, batch {settings.n_batch}"
                if settings.side_by_side > 1:
                    label += f", {settings.side_by_side} JSON calls side by side"
                label += ")"
            return label
        if offload.built_with_gpu:
            return "off (0 layers offloaded)"
        return "off (CPU-only llama.cpp build)"
    info = generator.info
    if info.gpu_layers > 0:
        return f"on, {info.gpu_layers} layers on {info.device}"
    return "off" if info.gpu_offload_supported else "off (CPU only)"


@dataclass
class Session:
    """The user being inspected, the chosen target, and what has been computed for it."""

    user_id: str
    target: Target | None = None
    retrieved: list[Retrieved] = field(default_factory=list)
    comparisons: list[ComparisonSet] = field(default_factory=list)
    measured: list[MeasuredDifferences] = field(default_factory=list)
    differences: list[Differences] = field(default_factory=list)
    profile: Profile | None = None
    results: list[GenerationResult] = field(default_factory=list)
    scores: dict[int, dict[str, float]] = field(default_factory=dict)
    """ROUGE scores by index into ``results``."""

    def set_target(self, target: Target) -> None:
        """A new target makes everything computed for the old one stale."""
        same = self.target is not None and _target_key(self.target) == _target_key(target)
        self.target = target
        if not same:
            self.retrieved, self.comparisons, self.measured = [], [], []
            self.differences, self.profile = [], None


def _target_key(target: Target) -> tuple[Any, ...]:
    return (target.user_id, target.item.id, target.rating, target.title)


class Jobs:
    """Cancel tokens of the work the person asked for, so switching user can stop all of it,
    and so background preparation knows when to yield (``busy``, ``on_change``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[CancelToken] = set()
        self.on_change: Callable[[], None] | None = None
        """Called (from any thread) after work starts, finishes or is cancelled."""

    def start(self) -> CancelToken:
        from dpl_engine import CancelToken

        token = CancelToken()
        with self._lock:
            self._tokens.add(token)
        self._changed()
        return token

    def finish(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.discard(token)
        self._changed()

    @property
    def busy(self) -> bool:
        """Some work the person asked for is still wanted (started, not cancelled)."""
        with self._lock:
            return any(not t.cancelled for t in self._tokens)

    def cancel_all(self) -> int:
        with self._lock:
            tokens, self._tokens = list(self._tokens), set()
        for token in tokens:
            token.cancel()
        self._changed()
        return len(tokens)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
