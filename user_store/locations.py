"""Every path dpl reads or writes, in one place.

Each location can be redirected by an environment variable so tests and
users can point the whole tool somewhere else. Nothing here creates a
directory or opens a file: callers create what they write, when they write it.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "dpl"


def data_dir() -> Path:
    """Where the database and its side files live: ``$DPL_HOME`` or the platform's user data dir."""
    home = os.environ.get("DPL_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Where settings live: ``$DPL_HOME`` when set, else the platform's user config dir."""
    home = os.environ.get("DPL_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_db_path() -> Path:
    """The database used when no ``--db`` is given (``$DPL_DB`` overrides)."""
    explicit = os.environ.get("DPL_DB")
    if explicit:
        return Path(explicit).expanduser()
    return data_dir() / "dpl.db"


def config_path() -> Path:
    """The settings file (``$DPL_CONFIG`` overrides)."""
    explicit = os.environ.get("DPL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return config_dir() / "config.json"


def rejects_path(db_path: Path) -> Path:
    """Lines an import rejected are written beside the database they were meant for."""
    return db_path.with_name(db_path.stem + ".rejects.jsonl")


def adapters_dir() -> Path:
    """Where `dpl tune` writes adapters (and the checkpoints of runs in progress)."""
    return data_dir() / "adapters"


def exports_dir() -> Path:
    """Default folder for exports from the app."""
    return data_dir() / "exports"


def sample_dir() -> Path:
    """The bundled sample data set shipped inside the package."""
    return Path(__file__).parent / "sample"
