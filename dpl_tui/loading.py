"""Turning a model choice into a loaded generator and embedder, for every front end.

A choice is a GGUF path, a registered GGUF name or a registered server name
(``dpl models add NAME --url ...``); None is the bundled default. The CLI
commands, ``dpl eval`` and the TUI all load through here, so ``--model NAME``
means the same everywhere. Nothing heavy is imported until a load is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
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
    return load_resolved(settings.resolve_model(choice), settings)


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


def generator_factory(choice: str | None) -> Callable[[], TextGenerator]:
    return lambda: load_generator(choice)


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

