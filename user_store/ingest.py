"""Import review and metadata files into the store: streamed, batched, idempotent.

Files are read line by line (``.jsonl``/``.json`` with one object a line,
``.csv``, and the gzip form of each), so memory stays flat however large they
are. Every ``BATCH`` records are written in one transaction together with the
running counts of the import, so an import killed half-way leaves a consistent
database and a re-run completes it: what was already stored counts as
duplicates. A line that cannot be imported is written to the rejects file
beside the database (file, line number, reason, the start of the line) and the
import goes on; ``strict=True`` stops at the first one instead.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import formats, locations
from .errors import BadLineError, IngestError
from .formats import BadRecord
from .store import UserStore
from .writer import write_item_rows, write_review_rows

BATCH = 20_000
"""Records per transaction (fewer, larger transactions rewrite fewer index pages)."""
BATCH_BYTES = 64 * 1024 * 1024
"""A batch is also written once its lines add up to this much text, to bound memory."""
WAL_AUTOCHECKPOINT = 10_000
"""Pages the write-ahead log may grow to during an import before it is copied back."""
MAX_LINE_BYTES = 8 * 1024 * 1024
"""Longer lines are rejected, and skipped without being read into memory whole."""
RAW_IN_REJECTS = 300
"""Characters of a rejected line kept in the rejects file."""
_SNIFF_LINES = 50

SAMPLE_FILES = ("reviews.jsonl.gz",)


@dataclass
class FileReport:
    """The outcome of importing one file."""

    path: str
    kind: str
    """'reviews' or 'meta'."""
    format: str
    """The layout the file was read as (amazon2023, amazon2014, amazon2018; 'meta' files too)."""
    read: int = 0
    """Records read (lines, or CSV rows; blank lines are not records)."""
    inserted: int = 0
    """New reviews (a new user-item pair) or new items."""
    updated: int = 0
    """Records that replaced what was stored: a newer review of the pair, or changed metadata."""
    duplicates: int = 0
    """Records that changed nothing: already stored as they are, or older than what is stored."""
    rejected: int = 0
    """Bad lines, written to the rejects file."""
    run_id: int = 0
    seconds: float = 0.0
    bytes: int = 0


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)
    rejects_path: Path | None = None
    """Where rejected lines were written (None when nothing was rejected)."""

    def total(self, name: str, kind: str | None = "reviews") -> int:
        return sum(getattr(f, name) for f in self.files if kind is None or f.kind == kind)

    @property
    def rejected(self) -> int:
        return self.total("rejected", None)


@dataclass(frozen=True)
class IngestProgress:
    """Where an import is: sent after every batch and at the end of each file."""

    path: str
    kind: str
    bytes_done: int
    bytes_total: int
    read: int
    rejected: int
    file_done: bool = False


ProgressCallback = Callable[[IngestProgress], None]


@dataclass(frozen=True)
class _Source:
    path: Path
    kind: str
    container: str
    """'jsonl' or 'csv'."""
    layout: str
    gz: bool
    size: int


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- opening and sniffing ------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open(path: Path, gz: bool) -> tuple[BinaryIO, BinaryIO]:
    """(the stream to read, the raw file whose position measures progress)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller via the returned pair
    if gz:
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _container(path: Path, gz: bool, fmt: str) -> str:
    if fmt == "csv":
        return "csv"
    name = path.name.lower()
    if gz and name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return "csv"
    return "jsonl"


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        # Some older Amazon dumps hold Python dict literals instead of JSON.
        if text.startswith("{'"):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        raise


def _sniff(path: Path, kind: str, fmt: str) -> _Source:
    """Check that ``path`` can be imported at all, and work out its format."""
    shown = str(path)
    if not path.exists():
        raise IngestError(f"{shown}: no such file.")
    if path.is_dir():
        raise IngestError(f"{shown}: is a folder, not a file.")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(f"{shown}: the file is empty.")
    if fmt not in formats.FORMATS:
        raise IngestError(f"Unknown format {fmt!r}; choose one of {', '.join(formats.FORMATS)}.")
    gz = _is_gzip(path)
    container = _container(path, gz, fmt)
    records: list[dict[str, Any]] = []
    stream, _raw = _open(path, gz)
    try:
        if container == "csv":
            text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
            header = next(csv.reader(text), None)
            if not header or not any(h.strip() for h in header):
                raise IngestError(f"{shown}: the file is empty.")
            records.append({h.strip().lstrip("\ufeff"): "x" for h in header})
        else:
            seen_any = False
            for _no, line in _read_lines(stream):
                if line is None or not line.strip():
                    seen_any = seen_any or line is None
                    continue
                seen_any = True
                try:
                    value = _parse_json(line.decode("utf-8").lstrip("\ufeff"))
                except (ValueError, SyntaxError):
                    value = None
                if isinstance(value, dict):
                    records.append(value)
                    break
                if isinstance(value, list) and _no == 1:
                    raise IngestError(
                        f"{shown}: holds a JSON array; convert it to one object per line "
                        "(for example `jq -c '.[]' FILE > FILE.jsonl`)."
                    )
                if _no >= _SNIFF_LINES:
                    break
            if not seen_any:
                raise IngestError(f"{shown}: the file has no records.")
    except (OSError, EOFError, zlib.error) as err:
        raise IngestError(f"{shown}: cannot be read ({err}).") from None
    finally:
        stream.close()
        _raw.close()
    if not records:
        raise IngestError(
            f"{shown}: unknown format: none of the first {_SNIFF_LINES} lines is a JSON object. "
            "dpl reads JSON lines (.jsonl, .json) and CSV (.csv), optionally gzipped."
        )
    detected = formats.detect_layout(records[0])
    keys = ", ".join(sorted(records[0])[:12])
    if kind == "meta":
        if detected in formats.REVIEW_LAYOUTS:
            raise IngestError(f"{shown}: holds reviews (it has user ids); pass it without --meta.")
        if detected is None:
            raise IngestError(
                f"{shown}: unknown metadata format (fields: {keys}); expected parent_asin or asin."
            )
        layout = "meta"
    else:
        if detected == "meta":
            raise IngestError(
                f"{shown}: looks like item metadata (no user ids); pass it with --meta."
            )
        if detected is None:
            raise IngestError(
                f"{shown}: unknown review format (fields: {keys}). Supported: Amazon Reviews "
                "2023 (user_id, parent_asin, rating, ...), 2014 and 2018 (reviewerID, asin, "
                "overall, ...)."
            )
        layout = detected
        if fmt in formats.REVIEW_LAYOUTS and fmt != detected:
            # 2014 and 2018 differ only in optional fields; both read the same keys.
            compatible = {fmt, detected} == {"amazon2014", "amazon2018"}
            if not compatible:
                raise IngestError(
                    f"{shown}: --format {fmt} does not match the file (fields: {keys}); "
                    f"it looks like {detected}. Use --format auto."
                )
            layout = fmt
    return _Source(path=path, kind=kind, container=container, layout=layout, gz=gz, size=size)


# -- reading records -----------------------------------------------------------------


def _read_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; bytes is None for a line over MAX_LINE_BYTES,
    which is skipped in pieces rather than read whole."""
    readline = stream.readline
    no = 0
    while True:
        line = readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        no += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield no, None
            continue
        yield no, line


Record = tuple[int, "dict[str, Any] | None", str, bytes | str]
"""(line number, record or None when bad, reason when bad, the raw line)."""


def _json_records(stream: BinaryIO) -> Iterator[Record]:
    for no, line in _read_lines(stream):
        if line is None:
            yield no, None, f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB", b""
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield no, None, f"invalid UTF-8 at byte {err.start}", line
            continue
        if no == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            value = _parse_json(text)
        except (ValueError, SyntaxError) as err:
            yield no, None, f"broken JSON ({err})", text
            continue
        if not isinstance(value, dict):
            yield no, None, f"a JSON {type(value).__name__}, not an object", text
            continue
        yield no, value, "", text


def _csv_records(stream: BinaryIO) -> Iterator[Record]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    old_limit = csv.field_size_limit(MAX_LINE_BYTES)
    try:
        reader = csv.reader(text)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        except StopIteration:
            return
        last = reader.line_num
        while True:
            start = last + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                last = reader.line_num
                yield start, None, f"bad CSV ({err})", ""
                continue
            last = reader.line_num
            if not row or not any(v.strip() for v in row):
                continue
            raw = ",".join(row)
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                yield start, None, "invalid UTF-8", raw.encode("utf-8", "surrogateescape")
                continue
            if len(row) != len(header):
                yield start, None, f"{len(row)} fields where the header has {len(header)}", raw
                continue
            yield start, dict(zip(header, row, strict=True)), "", raw
    finally:
        csv.field_size_limit(old_limit)


# -- the import ----------------------------------------------------------------------


class _Rejects:
    """Appends rejected lines to the rejects file, opening it on the first one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None
        self.count = 0

    def write(self, run_id: int, file: str, line: int, reason: str, raw: bytes | str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if isinstance(raw, bytes):
            raw = raw[: RAW_IN_REJECTS * 4].decode("utf-8", "replace")
        entry = {
            "run": run_id,
            "file": file,
            "line": line,
            "reason": reason,
            "raw": raw[:RAW_IN_REJECTS].rstrip("\r\n"),
        }
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def check_files(
    review_paths: Sequence[str | Path], meta_paths: Sequence[str | Path] = (), fmt: str = "auto"
) -> list[_Source]:
    """Raise IngestError for the first file that cannot be imported at all (missing,
    empty, unknown format); otherwise the files in import order, metadata first."""
    if not review_paths and not meta_paths:
        raise IngestError("No files to import. Name review files, or use --sample.")
    sources = [_sniff(Path(p).expanduser(), "meta", fmt) for p in meta_paths]
    sources += [_sniff(Path(p).expanduser(), "reviews", fmt) for p in review_paths]
    return sources


def ingest_files(
    store: UserStore,
    review_paths: Sequence[str | Path],
    meta_paths: Sequence[str | Path] = (),
    fmt: str = "auto",
    strict: bool = False,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Import metadata files, then review files, into ``store``.

    Raises IngestError before writing anything when a file is missing, empty or
    in an unknown format; raises BadLineError at the first bad line when ``strict``
    (the lines before it are kept)."""
    sources = check_files(review_paths, meta_paths, fmt)
    rejects = _Rejects(locations.rejects_path(store.path))
    report = IngestReport()
    store.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    try:
        for source in sources:
            report.files.append(_ingest_one(store, source, rejects, strict, progress))
    finally:
        store.conn.execute("PRAGMA wal_autocheckpoint = 1000")
        rejects.close()
        if rejects.count:
            report.rejects_path = rejects.path
    return report


def ingest_sample(store: UserStore, progress: ProgressCallback | None = None) -> IngestReport:
    """Import the sample data set bundled with the package."""
    folder = locations.sample_dir()
    return ingest_files(store, [folder / name for name in SAMPLE_FILES], progress=progress)


def _ingest_one(
    store: UserStore,
    source: _Source,
    rejects: _Rejects,
    strict: bool,
    progress: ProgressCallback | None,
) -> FileReport:
    import time

    started = time.perf_counter()
    shown = str(source.path)
    conn = store.conn
    with store._lock, conn:
        run_id = conn.execute(
            "INSERT INTO import_runs (file, kind, format, started_at) VALUES (?, ?, ?, ?)",
            (str(source.path.resolve()), source.kind, source.layout, _now()),
        ).lastrowid
    report = FileReport(
        path=shown, kind=source.kind, format=source.layout, run_id=run_id, bytes=source.size
    )
    write = write_item_rows if source.kind == "meta" else write_review_rows
    layout = source.layout
    to_row = formats.item_row if source.kind == "meta" else None
    stream, raw = _open(source.path, source.gz)
    records = _csv_records(stream) if source.container == "csv" else _json_records(stream)
    batch: list[tuple] = []
    batch_bytes = 0

    def flush(status: str = "running") -> None:
        nonlocal batch_bytes
        batch_bytes = 0
        with store._lock, conn:
            ins, upd, dup = write(conn, batch)
            report.inserted += ins
            report.updated += upd
            report.duplicates += dup
            conn.execute(
                "UPDATE import_runs SET read = ?, inserted = ?, updated = ?, duplicates = ?,"
                " rejected = ?, status = ?, finished_at = ? WHERE id = ?",
                (
                    report.read,
                    report.inserted,
                    report.updated,
                    report.duplicates,
                    report.rejected,
                    status,
                    None if status == "running" else _now(),
                    run_id,
                ),
            )
        batch.clear()
        if progress is not None:
            progress(
                IngestProgress(
                    path=shown,
                    kind=source.kind,
                    bytes_done=source.size if status != "running" else raw.tell(),
                    bytes_total=source.size,
                    read=report.read,
                    rejected=report.rejected,
                    file_done=status != "running",
                )
            )

    status = "failed"
    try:
        for no, record, reason, line in records:
            report.read += 1
            if record is not None:
                try:
                    if to_row is None:
                        batch.append(formats.review_row(record, layout))
                    else:
                        batch.append(to_row(record, line if isinstance(line, str) else ""))
                    batch_bytes += len(line)
                    if len(batch) >= BATCH or batch_bytes >= BATCH_BYTES:
                        flush()
                    continue
                except BadRecord as err:
                    reason = str(err)
            report.rejected += 1
            rejects.write(run_id, shown, no, reason, line)
            if strict:
                status = "stopped"
                flush(status)
                raise BadLineError(shown, no, reason)
        status = "done"
        flush(status)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        flush("failed")
        raise IngestError(
            f"{shown}: the file is damaged after line {report.read} ({err}); "
            "the lines before it were imported."
        ) from None
    finally:
        if status == "failed" and conn.in_transaction:
            conn.rollback()
        stream.close()
        raw.close()
        report.seconds = time.perf_counter() - started
    return report
