"""What every command shares: the consoles, opening the store, progress bars, and turning
errors into one readable line instead of a traceback. The shared options are in
``commands/options.py``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console

from user_store import StoreError

console = Console()
err_console = Console(stderr=True)


def db_path(db: Path | None) -> Path:
    from user_store import locations

    return db if db is not None else locations.default_db_path()


def open_store(db: Path | None):  # -> UserStore
    """The existing database for a read-mostly command; a missing one is a user error."""
    from user_store import UserStore
    from user_store.errors import DatabaseError

    path = db_path(db)
    if not path.exists():
        raise DatabaseError(
            f"No database at {str(path)!r} yet. Import reviews first: "
            "`dpl ingest --sample` or `dpl ingest FILE`."
        )
    return UserStore(path)


def embedder_id(folder: str | None) -> str:
    """The id an embedder folder caches under (the bundled one by default), without torch."""
    from models.embeddings import embedder_id as id_of
    from models.registry import default_embedder_path

    return id_of(Path(folder).expanduser() if folder else default_embedder_path())


def fail(message: str, code: int = 1) -> typer.Exit:
    from rich.text import Text

    # The message may quote user values such as "[bold]": print it as plain text, unwrapped.
    err_console.print(
        Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print the message of any dpl error and exit non-zero, without a traceback."""
    from dpl_engine import EngineError
    from models import ModelError

    try:
        yield
    except (StoreError, ModelError, EngineError) as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None


def eta_progress(label: str, **options):  # -> rich.progress.Progress
    """Bars on stderr: ``label``, the bar, done/total, elapsed, ETA and a note per task."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(label, markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}", markup=False),
        console=err_console,
        # One LLM call can take a minute: estimate speed over a long window.
        speed_estimate_period=1800,
        **options,
    )


@contextlib.contextmanager
def stop_on_terminate() -> Iterator[None]:
    """Inside: SIGTERM (``kill PID``, a job scheduler's stop) stops like Ctrl-C, so a long
    command keeps what it finished and says how to continue. Ctrl-C is restored too where
    the shell started the command with it ignored (a background job of a script)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def threads_note(generator) -> str:  # generator: TextGenerator
    """How the model runs: llama.cpp's CPU threads (and GPU layers, and JSON calls side by side),
    or the server it is on."""
    info = generator.info
    if info.threads:
        where = f"{info.threads} CPU thread{'s' if info.threads != 1 else ''}"
        if info.gpu_layers:
            where += f", {info.gpu_layers} layers on {info.device}"
        if generator.concurrency > 1:
            where += f", {generator.concurrency} JSON calls side by side"
        return where
    return f"served ({generator.concurrency} at once)"
