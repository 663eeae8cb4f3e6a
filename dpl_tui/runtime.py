"""The app's models and the engine over them: loaded in a background thread, switched on
request, and the engine built on first use from any thread.

Plain Python, no widgets: what the app must show is handed to ``post`` as ``ModelState``
messages, which the app turns into its status line and notifications.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from .backend import (
    EmbedderFactory,
    EngineFactory,
    GeneratorFactory,
    ModelHolder,
    gpu_label,
    model_label,
)

if TYPE_CHECKING:
    from dpl_engine import Engine
    from models import Embedder, TextGenerator
    from user_store import UserStore
    from user_store.config import Settings

    from .loading import ModelPair

BUNDLED_LABEL = "bundled SmolLM2-135M-Instruct"


@dataclass
class ModelState(Message):
    """News of a model load, sent from the loading thread."""

    load: int
    """Which load sent it; news of a superseded load is ignored."""
    status: str | None = None
    gpu: str | None = None
    activity: str | None = None
    error: BaseException | None = None
    what: str = "model"


class ModelRuntime:
    """The generator, the embedder and the engine the app's screens share."""

    def __init__(
        self,
        settings: Settings,
        model: str | None,
        *,
        post: Callable[[Message], object],
        engine_factory: EngineFactory,
        generator_factory: GeneratorFactory | None = None,
        embedder_factory: EmbedderFactory | None = None,
    ) -> None:
        self.settings = settings
        """The app's settings object, read when a model or the engine is built."""
        self.models = ModelHolder(
            settings.resolve_model(model),
            generator_factory=generator_factory or self._load_generator,
            embedder_factory=embedder_factory or self._load_embedder,
            embedder_source=self._embedder_source,
        )
        self._post = post
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._pair: ModelPair | None = None
        """The writer and reader models when an adapter is applied (see ``loading``)."""
        self.load_count = 0
        self._loader: threading.Thread | None = None

    # -- loading -------------------------------------------------------------------------
    def _load_generator(self, choice: str | None) -> TextGenerator:
        """A registered server, or a GGUF file through llama.cpp, under the app's settings;
        with the chosen adapter applied to the review-writing calls."""
        from .loading import ModelPair, load_resolved

        if self.settings.adapter is None and not os.environ.get("DPL_ADAPTER"):
            self._pair = None
            return load_resolved(choice, self.settings)
        pair = ModelPair(choice, None, self.settings)
        writer = pair.writer()
        self._pair = pair
        return writer

    def _load_embedder(self, choice: str | None) -> Embedder:
        """The server's embedding model when ``choice``'s entry names one, else the local one."""
        from .loading import embedder_factory

        return embedder_factory(self.settings, choice)()

    def _embedder_source(self, choice: str | None) -> str:
        """The id embeddings for ``choice`` are cached under (nothing is loaded)."""
        from .loading import embedder_id

        return embedder_id(self.settings, choice)

    def load(self) -> None:
        """Load the generator, then the embedder, in a background thread.

        A daemon thread rather than a Textual thread worker: a load cannot be interrupted
        (it may be inside ``import torch``), and the app's exit waits for every worker, so
        quitting during a load would hang until it finished."""
        self.load_count += 1
        self._loader = threading.Thread(
            target=self._load,
            args=(self.load_count,),
            name="dpl-load-models",
            daemon=True,
        )
        self._loader.start()

    @property
    def loading(self) -> bool:
        return self._loader is not None and self._loader.is_alive()

    def _load(self, load: int) -> None:
        choice = self.models.model_choice or BUNDLED_LABEL
        self._post(ModelState(load, status=f"loading {choice}…", activity="loading the model"))
        try:
            generator = self.models.generator()
        except Exception as err:  # shown to the person; the app stays up
            self._post(ModelState(load, status="failed to load", error=err, activity=""))
            return
        self._post(
            ModelState(
                load,
                status=model_label(generator),
                gpu=gpu_label(generator),
                activity="loading the embedder",
            )
        )
        try:
            self.models.embedder()
        except Exception as err:
            self._post(ModelState(load, error=err, activity="", what="embedder"))
            return
        self._post(ModelState(load, activity=""))

    def switch(self, choice: str | None) -> None:
        """Use model ``choice`` from the next load on (the engine is rebuilt on next use)."""
        self.models.switch_model(self.settings.resolve_model(choice))
        self.reset_engine()

    def close(self) -> None:
        self.models.close()

    # -- the engine ----------------------------------------------------------------------
    def engine(self, store: UserStore) -> Engine:
        """The engine over ``store`` and these models, built on first use."""
        with self._engine_lock:
            if self._engine is None:
                from .configs import engine_config

                reader = (
                    {}
                    if self._pair is None
                    else {
                        "analyst": self._pair.analyst,
                        "personal": self._pair.personal_factory,
                    }
                )
                self._engine = self._engine_factory(
                    store,
                    self.models.generator,
                    self.models.embedder,
                    engine_config(self.settings),
                    **reader,
                )
            return self._engine

    def reset_engine(self) -> None:
        """Build the engine again on next use (settings or models changed)."""
        with self._engine_lock:
            self._engine = None
