"""``dpl ingest``, ``dpl stats``, ``dpl users``, ``dpl user`` and ``dpl locate``:
getting review histories into the store and looking at what is there."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..common import console, db_path, err_console, open_store, user_errors
from .options import DbOption, JsonOption

INGEST_EPILOG = (
    "Exit status: 0 when every file was imported (rejected lines, if any, are listed in "
    "the rejects file beside the database); 1 when a file cannot be imported at all "
    "(missing, empty, unknown format) and nothing was written; 2 when --strict stopped at "
    "a bad line (the lines before it were kept); 130 when interrupted (re-run to finish)."
)

USER_ORDER_HELP = "Sort by: reviews, rating, comparable (items with >= m other reviewers), id."


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- ingest ------------------------------------------------------------------------------


def ingest(
    reviews: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Review files: .jsonl, .json (one object a line) or .csv, optionally .gz.",
            show_default=False,
        ),
    ] = None,
    meta: Annotated[
        list[Path] | None,
        typer.Option("--meta", help="Item metadata file(s) (titles, descriptions); repeatable."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, amazon2023, amazon2014, amazon2018 or csv. auto tells them apart "
            "from the file's fields.",
        ),
    ] = "auto",
    sample: Annotated[
        bool, typer.Option("--sample", help="Import the sample data bundled with dpl.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad line instead of rejecting it.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; print a one-line summary.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import review histories (Amazon Reviews 2023, 2014 or 2018 layouts) into the store.

    Importing the same file again changes nothing; one review is kept per user and
    item (the latest). Bad lines go to the rejects file (`dpl locate` shows it)."""
    from user_store.errors import BadLineError, IngestError
    from user_store.ingest import check_files, ingest_files, ingest_sample

    with user_errors():
        if not reviews and not meta and not sample:
            raise IngestError("Name review files to import, or use --sample for the bundled data.")
        if fmt != "auto" and not (reviews or meta):
            raise IngestError(
                f"--format {fmt} names the layout of files you import; the bundled sample "
                "needs none. Drop --format, or name the files it describes."
            )
        if reviews or meta:
            check_files(reviews or [], meta or [], fmt)  # before the database is created
        store = _open_for_writing(db)
        try:
            with _progress(quiet or as_json) as on_progress:
                try:
                    if sample:
                        report = ingest_sample(store, progress=on_progress)
                        if reviews or meta:
                            more = ingest_files(
                                store, reviews or [], meta or [], fmt, strict, on_progress
                            )
                            report.files += more.files
                            report.rejects_path = more.rejects_path or report.rejects_path
                    else:
                        report = ingest_files(
                            store, reviews or [], meta or [], fmt, strict, on_progress
                        )
                except BadLineError as err:
                    err_console.print(
                        Text.assemble(("error: ", "bold red"), str(err)),
                        highlight=False,
                        soft_wrap=True,
                    )
                    from user_store import locations

                    err_console.print(
                        f"Stopped by --strict; the lines before it were imported. Rejected line "
                        f"logged in {locations.rejects_path(store.path)}.",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
                    raise typer.Exit(2) from None
            stats = store.stats()
        finally:
            store.close()
    if as_json:
        _echo_json(
            {
                "files": [asdict(f) for f in report.files],
                "rejects_path": str(report.rejects_path) if report.rejects_path else None,
                "store": {
                    "users": stats.users,
                    "items": stats.items,
                    "reviews": stats.reviews,
                    "db_path": stats.db_path,
                },
            }
        )
        return
    if quiet:
        totals = {
            k: report.total(k, None)
            for k in ("read", "inserted", "updated", "duplicates", "rejected")
        }
        line = (
            f"Imported {len(report.files)} file(s): {totals['read']:,} read, "
            f"{totals['inserted']:,} inserted, {totals['updated']:,} updated, "
            f"{totals['duplicates']:,} duplicates, {totals['rejected']:,} rejected. "
            f"Store: {stats.users:,} users, {stats.reviews:,} reviews ({stats.db_path})."
        )
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(_summary_table(report))
        console.print(
            f"Store {stats.db_path}: {stats.users:,} users, {stats.items:,} items, "
            f"{stats.reviews:,} reviews.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if report.rejects_path:
        err_console.print(
            f"{report.rejected:,} line(s) rejected; file, line and reason of each are in "
            f"{report.rejects_path}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _open_for_writing(db: Path | None):  # -> UserStore
    from user_store import UserStore

    return UserStore(db_path(db))


class _progress:
    """A rich progress bar per file (bytes, rate, ETA), or nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):  # -> ProgressCallback | None
        if self.quiet:
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[records]}"),
            console=err_console,
            transient=False,
        )
        self.bar.start()
        return self.update

    def update(self, event) -> None:  # event: IngestProgress
        assert self.bar is not None
        task = self.tasks.get(event.path)
        if task is None:
            task = self.bar.add_task(
                _one_line(Path(event.path).name, 32), total=event.bytes_total, records=""
            )
            self.tasks[event.path] = task
        label = "items" if event.kind == "meta" else "reviews"
        self.bar.update(
            task,
            completed=event.bytes_done,
            records=f"{event.read:,} {label}"
            + (f", {event.rejected:,} rejected" if event.rejected else ""),
        )

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary_table(report) -> Table:  # report: IngestReport
    table = Table(title="Import summary", title_justify="left")
    table.add_column("File")
    table.add_column("Format")
    for name in ("Read", "Inserted", "Updated", "Duplicates", "Rejected", "Seconds"):
        table.add_column(name, justify="right")
    for f in report.files:
        kind = "meta" if f.kind == "meta" else f.format
        table.add_row(
            Text(Path(f.path).name),
            kind,
            f"{f.read:,}",
            f"{f.inserted:,}",
            f"{f.updated:,}",
            f"{f.duplicates:,}",
            Text(f"{f.rejected:,}", style="red" if f.rejected else ""),
            f"{f.seconds:.1f}",
        )
    return table


# -- looking at the store ------------------------------------------------------------------


def stats(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Counts of users, items, reviews and cached results, and the import history."""
    with user_errors():
        store = open_store(db)
        try:
            st = store.stats()
            runs = store.import_runs()
        finally:
            store.close()
    if as_json:
        _echo_json({**asdict(st), "import_runs": [asdict(r) for r in runs]})
        return
    table = Table(show_header=False, title=Text(st.db_path), title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("users", f"{st.users:,}")
    table.add_row("items", f"{st.items:,}")
    table.add_row("  without metadata", f"{st.items_missing_metadata:,}")
    table.add_row("reviews", f"{st.reviews:,}")
    table.add_row("imports", f"{st.imports:,}")
    table.add_row("database size", _size(st.db_bytes))
    for kind, n in st.cached.items():
        table.add_row(f"cached {kind}", f"{n:,}")
    console.print(table)
    if runs:
        recent = Table(title="Recent imports", title_justify="left")
        for name in (
            "#",
            "File",
            "Format",
            "Read",
            "Inserted",
            "Updated",
            "Duplicates",
            "Rejected",
            "Finished",
        ):
            recent.add_column(name, justify="right" if name not in ("File", "Format") else "left")
        for r in runs[-10:]:
            recent.add_row(
                str(r.id),
                Text(Path(r.file).name),
                r.format,
                f"{r.read:,}",
                f"{r.inserted:,}",
                f"{r.updated:,}",
                f"{r.duplicates:,}",
                f"{r.rejected:,}",
                r.finished_at or "unfinished",
            )
        console.print(recent)


def users(
    search: Annotated[
        str | None,
        typer.Option(
            "--search", "-s", help="User id prefix, or words from their reviews or items."
        ),
    ] = None,
    min_reviews: Annotated[
        int, typer.Option("--min-reviews", help="Only users with this many reviews.")
    ] = 0,
    m: Annotated[
        int | None,
        typer.Option(
            "--m", help="Count items with at least m other reviewers (default: setting m)."
        ),
    ] = None,
    order: Annotated[str, typer.Option("--order", help=USER_ORDER_HELP)] = "reviews",
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many to show (0: all).")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List users with their review counts, average rating and comparable items."""
    from user_store.config import Settings

    with user_errors():
        m_value = m if m is not None else Settings.load().m
        store = open_store(db)
        try:
            found = store.users(
                search=search,
                min_reviews=min_reviews,
                m=m_value,
                order_by=order,
                limit=limit or None,
            )
        finally:
            store.close()
    if as_json:
        _echo_json([asdict(u) for u in found])
        return
    if not found:
        console.print("No users match.", highlight=False)
        return
    table = Table()
    table.add_column("User")
    table.add_column("Reviews", justify="right")
    table.add_column("Avg rating", justify="right")
    table.add_column(f"Items with >= {m_value} others", justify="right")
    for u in found:
        table.add_row(
            Text(u.user_id), str(u.review_count), f"{u.avg_rating:.2f}", str(u.comparable_items)
        )
    console.print(table)


def user(
    user_id: Annotated[str, typer.Argument(help="The user's id (see `dpl users`).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A user's review history, oldest first, with item titles."""
    with user_errors():
        store = open_store(db)
        try:
            history = store.user_history(user_id)
        finally:
            store.close()
    if as_json:
        _echo_json(
            {
                "user_id": history.user_id,
                "reviews": [{**asdict(e.review), "item": asdict(e.item)} for e in history.entries],
            }
        )
        return
    table = Table(title=Text(f"{user_id}: {len(history.entries)} reviews"), title_justify="left")
    table.add_column("Date")
    table.add_column("Item")
    table.add_column("Rating", justify="right")
    table.add_column("Title")
    table.add_column("Review")
    for e in history.entries:
        item = e.item.id if e.item.metadata_missing else f"{e.item.title} ({e.item.id})"
        table.add_row(
            _date(e.review.timestamp),
            Text(_one_line(item, 40)),
            f"{e.review.rating:g}",
            Text(_one_line(e.review.title, 30)),
            Text(_one_line(e.review.text, 60)),
        )
    console.print(table)


def locate(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Where dpl keeps its files: the database, settings, rejects file and data folder."""
    from user_store import locations

    path = db_path(db)
    places = {
        "database": str(path),
        "config": str(locations.config_path()),
        "rejects": str(locations.rejects_path(path)),
        "data_dir": str(locations.data_dir()),
    }
    if as_json:
        _echo_json(places)
        return
    for name, value in places.items():
        exists = "" if Path(value).exists() else "  (not created yet)"
        console.print(f"{name:9} {value}{exists}", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("ingest", epilog=INGEST_EPILOG)(ingest)
    app.command("stats")(stats)
    app.command("users")(users)
    app.command("user")(user)
    app.command("locate")(locate)


__all__ = ["register"]
