"""Turning a model choice into a loaded generator and embedder, for every front end.

A choice is a GGUF path, a registered GGUF name or a registered server name
(``dpl models add NAME --url ...``); None is the bundled default. The CLI
commands, ``dpl eval`` and the TUI all load through here, so ``--model NAME``
means the same everywhere. Nothing heavy is imported until a load is asked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models import Embedder, TextGenerator
    from models.server import ServerConfig
    from user_store.config import Settings


def server_config(settings: Settings, choice: str | None) -> ServerConfig | None:
    """The server registered as ``choice`` (after $DPL_MODEL and the saved setting)."""
    from models.server import ServerConfig

    name = settings.resolve_model(choice)
    entry = settings.server(name)
    return ServerConfig.from_dict(name, entry) if entry is not None and name else None


def load_generator(choice: str | None, settings: Settings | None = None) -> TextGenerator:
    """Connect to a registered server, or load a GGUF file in-process with llama.cpp.

    ``choice`` is resolved first ($DPL_MODEL, the saved setting, registered names)."""
    from user_store.config import Settings

    settings = settings or Settings.load()
    with _naming_the_source(settings, choice):
        return load_resolved(settings.resolve_model(choice), settings)


@contextmanager
def _naming_the_source(settings: Settings, choice: str | None) -> Iterator[None]:
    """A missing model file that $DPL_MODEL or the saved choice named says so."""
    from models.errors import ModelNotFoundError

    try:
        yield
    except ModelNotFoundError as err:
        source = settings.model_source(choice)
        if not source:
            raise
        raise ModelNotFoundError(f"{err} {source}") from err


def load_resolved(value: str | None, settings: Settings | None = None) -> TextGenerator:
    """``value`` as already resolved: a registered server's name, a GGUF path, or None."""
    from user_store.config import Settings

    settings = settings or Settings.load()
    entry = settings.server(value)
    if entry is not None and value:
        from models.server import ServerConfig, connect

        return connect(ServerConfig.from_dict(value, entry))
    from models.llama import load_generator as load_gguf

    return load_gguf(value)


def local_gguf(settings: Settings, choice: str | None, why: str) -> Path:
    """The GGUF file ``choice`` names (else the bundled default), checked before any work;
    a registered server is refused, ``why`` saying what needs a file on this machine."""
    from models.adapters import AdapterError
    from models.registry import default_gguf_path, inspect_gguf

    resolved = settings.resolve_model(choice)
    if resolved is not None and settings.server(resolved) is not None:
        raise AdapterError(f"{resolved!r} is an LLM server: {why}")
    path = Path(resolved).expanduser() if resolved else default_gguf_path()
    with _naming_the_source(settings, choice):
        inspect_gguf(path)  # a missing, foreign or truncated file is named here
    return path


ADAPTER_ENV = "DPL_ADAPTER"


def resolve_adapter(settings: Settings, choice: str | None) -> str | None:
    """The adapter to apply: ``choice`` (--adapter), else $DPL_ADAPTER, else the saved
    setting; a registered name maps to its file. None: no adapter. Raises AdapterError for a
    name that is neither registered nor a file."""
    value = choice or os.environ.get(ADAPTER_ENV) or settings.adapter or None
    if value is None:
        return None
    from models.adapters import AdapterError

    if value in settings.adapters:
        path = settings.adapters[value]
        if not Path(path).expanduser().exists():
            raise AdapterError(
                f"Adapter {value!r} is registered at {path!r}, but no file is there. Train it "
                f"again with `dpl tune`, or forget it: dpl models remove {value}."
            )
        return path
    if not Path(value).expanduser().exists():
        known = ", ".join(sorted(settings.adapters)) or "none yet"
        source = ""
        if not choice:
            source = (
                f" ${ADAPTER_ENV} names it: unset it, or point it at an adapter."
                if os.environ.get(ADAPTER_ENV)
                else " It is the saved adapter choice: pick another in the app (Switch model)."
            )
        raise AdapterError(
            f"No adapter named {value!r} (registered: {known}) and no such file. Train one "
            f"with `dpl tune`, or pass the path of an adapter .gguf.{source}"
        )
    return str(Path(value).expanduser())


class ModelPair:
    """The model that writes reviews and the one that reads users (the differences and
    profiles), loaded once, on first use, from a model choice and an optional adapter.

    Without an adapter one model does both. With one, the writer is the base model with
    the adapter applied, and the reader is what the adapter was trained with: its teacher
    when it names one, else the same loaded base model without the adapter."""

    def __init__(
        self,
        choice: str | None,
        adapter: str | None = None,
        settings: Settings | None = None,
        *,
        personal: bool = True,
    ) -> None:
        """``personal``: write each user's reviews with their own per-user adapter on top of
        the task adapter where one was kept (``dpl tune --user``)."""
        from user_store.config import Settings

        self.settings = settings or Settings.load()
        self.choice = choice
        self.adapter_path = resolve_adapter(self.settings, adapter)
        self.use_personal = personal
        self._lock = threading.Lock()
        self._writer: TextGenerator | None = None
        self._analyst: TextGenerator | None = None
        self._personal: dict[str, TextGenerator | None] = {}

    def writer(self) -> TextGenerator:
        with self._lock:
            if self._writer is None:
                base = load_generator(self.choice, self.settings)
                if self.adapter_path is None:
                    self._writer = base
                else:
                    self._writer = _with_adapter(base, self.adapter_path)
            return self._writer

    @cached_property
    def merged(self) -> dict | None:
        """The record of a merged model (``dpl models merge``) when that is the choice."""
        resolved = self.settings.resolve_model(self.choice)
        if self.adapter_path is not None or not resolved or self.settings.server(resolved):
            return None
        from models.adapters import merged_record

        return merged_record(resolved)

    def analyst(self) -> TextGenerator:
        writer = self.writer()
        merged = self.merged
        with self._lock:
            if self._analyst is None and merged is not None:
                self._analyst = self._merged_reader(merged)
            if self._analyst is None:
                adapter = getattr(writer, "adapter", None)
                teacher = adapter.meta.get("teacher") if adapter is not None else None
                if teacher and adapter.meta.get("teacher_id") != adapter.base_model_id:
                    self._analyst = load_generator(teacher, self.settings)
                else:
                    self._analyst = writer.base  # type: ignore[attr-defined]
            return self._analyst

    def personal(self, user_id: str) -> TextGenerator | None:
        """The writer with ``user_id``'s kept per-user adapter on top, or None."""
        if self.adapter_path is None or not self.use_personal:
            return None
        writer = self.writer()
        with self._lock:
            if user_id not in self._personal:
                from dpl_engine.tuning.personal import find_personal

                task = getattr(writer, "adapter", None)
                path = find_personal(self.adapter_path, task.adapter_id, user_id) if task else None
                self._personal[user_id] = _with_adapter(writer, str(path)) if path else None
            return self._personal[user_id]

    def _merged_reader(self, merged: dict) -> TextGenerator:
        """What reads users for a merged model: the adapter's teacher, else its base."""
        from models.adapters import AdapterError
        from models.registry import model_id_for

        meta = merged.get("adapter") or {}
        teacher = meta.get("teacher")
        if teacher and meta.get("teacher_id") != meta.get("base_model_id"):
            return load_generator(teacher, self.settings)
        base = Path(str(merged.get("base_path", "")))
        if not base.is_file() or model_id_for(base) != merged.get("base_model_id"):
            raise AdapterError(
                f"The merged model {self.choice!r} reads users with its base "
                f"{merged.get('base_model_id')!r}, which is no longer at {str(base)!r}. Put "
                "it back, or merge the adapter again (dpl models merge)."
            )
        return load_resolved(str(base), self.settings)

    @property
    def personal_factory(self) -> Callable[[str], TextGenerator | None] | None:
        """What ``Engine(personal=...)`` takes: None without a task adapter."""
        return None if self.adapter_path is None or not self.use_personal else self.personal

    @property
    def analyst_factory(self) -> Callable[[], TextGenerator] | None:
        """What ``Engine(analyst=...)`` takes: None when the writer reads users itself."""
        if self.adapter_path is None and self.merged is None:
            return None
        return self.analyst


def _with_adapter(base: TextGenerator, path: str) -> TextGenerator:
    with_adapter = getattr(base, "with_adapter", None)
    if with_adapter is None:
        from models.adapters import AdapterError

        raise AdapterError(
            f"{base.model_id} runs behind a server, so dpl cannot apply adapter {path!r} to "
            "it: start llama-server with --lora FILE and register that server, or pass a GGUF "
            "file with --model (see docs/readme/tune.md)."
        )
    return with_adapter(path)


def embedder_factory(settings: Settings, choice: str | None) -> Callable[[], Embedder]:
    """The chosen server's embedding model when its entry names one, else the local one."""
    config = server_config(settings, choice)
    if config is not None and config.embedding_model:

        def load_remote() -> Embedder:
            from models.server import connect_embedder

            return connect_embedder(config)

        return load_remote
    folder = settings.embedder

    def load_local() -> Embedder:
        from models.embeddings import load_embedder

        return load_embedder(folder)

    return load_local


def embedder_id(settings: Settings, choice: str | None) -> str:
    """The id embeddings are cached under, known without loading the embedder."""
    config = server_config(settings, choice)
    if config is not None and config.embedding_model:
        from models.server import embedder_id as remote_id

        return remote_id(config)
    from models.embeddings import embedder_id as id_of
    from models.registry import default_embedder_path

    folder = settings.embedder
    return id_of(Path(folder).expanduser() if folder else default_embedder_path())
