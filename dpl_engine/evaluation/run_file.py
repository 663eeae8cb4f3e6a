"""An evaluation run as a file: its configuration, its split's identity and every finished
result (generated text and scores), so a run can move to another store and go on there.

``export_run`` writes JSON Lines (gzip-compressed when the name ends in ``.gz``): one header
line, then one line per finished (method, seed, user). The held-out references are not
written; ``import_run`` reads them from the importing store and checks each against the
digest the file carries, so the file never holds the dataset's text and a store with other
data is refused instead of scored against the wrong reviews.

Importing recomputes the split from its parameters on the importing store. A store with the
same reviews gives the same split (the fingerprint and the roles are compared), so the
imported run has the configuration ``dpl eval`` computes for the same options there: the same
command then resumes it, generating only the cells the file lacks.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from user_store import UserStore
from user_store.eval_store import EvalStore, ResultRow, StoredRun, canonical, review_of, sha

from ..errors import EngineError

FORMAT = "dpl-eval-run"
VERSION = 1
_LOCAL = ("run_id", "generation_id", "reference")
"""Result fields that belong to one store and are not written."""
_REQUIRED = tuple(f for f in ResultRow.__dataclass_fields__ if f not in _LOCAL)


@dataclass(frozen=True)
class Imported:
    run: StoredRun
    added: int
    already: int
    """Results the store held already (an earlier import, or the same cells generated here)."""


def _open(path: Path, mode: str, compressed: bool) -> IO[str]:
    if compressed:
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")  # noqa: SIM115 - closed by the caller's with


def _roles_digest(roles: dict[str, list[tuple[str, str]]]) -> str:
    return sha(canonical({role: [list(pair) for pair in pairs] for role, pairs in roles.items()}))


def export_run(store: UserStore, run_id: int, path: Path) -> int:
    """Write run ``run_id`` to ``path``; returns the number of results written."""
    evals = EvalStore(store)
    run = evals.run(run_id)
    split = evals.split(run.split_id)
    config = {k: v for k, v in run.config.items() if k != "split_id"}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "split": {
            "params": split.params,
            "data_fingerprint": split.data_fingerprint,
            "roles": _roles_digest(split.roles),
        },
        "run": {"config": config, "status": run.status, "elapsed_s": run.elapsed_s},
    }
    rows = evals.results(run_id)
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _open(tmp, "w", path.suffix == ".gz") as out:
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for row in rows:
                record = {k: v for k, v in asdict(row).items() if k not in _LOCAL}
                record["reference_sha"] = sha(row.reference)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise EngineError(
            f"Cannot write the run file {str(path)!r}: {err.strerror or err}. Pass --export a "
            "path in a folder you can write to."
        ) from err
    return len(rows)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with _open(path, "r", path.suffix == ".gz") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as e:
                    raise EngineError(f"{path}, line {number}: not valid JSON ({e}).") from None
                if not isinstance(value, dict):
                    raise EngineError(f"{path}, line {number}: expected a JSON object.")
                yield number, value
    except OSError as e:  # missing file, or a .gz that is not gzip
        raise EngineError(f"Cannot read the run file {path}: {e}.") from None


def _header(path: Path, number: int, header: dict[str, Any]) -> tuple[dict, dict]:
    if header.get("format") != FORMAT:
        raise EngineError(
            f"{path}, line {number}: not a dpl evaluation run (write one with "
            "`dpl eval --report N --export FILE`)."
        )
    if header.get("version") != VERSION:
        raise EngineError(
            f"{path}, line {number}: run file version {header.get('version')!r}; this dpl "
            f"reads version {VERSION}."
        )
    split, run = header.get("split"), header.get("run")
    if not isinstance(split, dict) or not isinstance(run, dict) or "config" not in run:
        raise EngineError(f"{path}, line {number}: the header lacks its split or run.")
    return split, run


def _result(path: Path, number: int, record: dict[str, Any], run_id: int) -> ResultRow:
    missing = [f for f in (*_REQUIRED, "reference_sha") if f not in record]
    if missing:
        raise EngineError(f"{path}, line {number}: missing {', '.join(missing)}.")
    values = {f: record[f] for f in _REQUIRED}
    return ResultRow(run_id=run_id, generation_id=None, reference="", **values)


def import_run(store: UserStore, path: Path) -> Imported:
    """Add the run in ``path`` to the store (or the results it lacks to the same run there).

    Every line is checked before anything is written: a bad file changes nothing."""
    from .paper_split import PaperSplitParams
    from .split import params_from_dict, prepare, prepare_paper

    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise EngineError(f"{path} is empty: it holds no evaluation run.")
    split_info, run_info = _header(path, *first)
    try:
        params = params_from_dict(split_info["params"])
    except (KeyError, TypeError) as e:
        raise EngineError(f"{path}, line {first[0]}: unreadable split parameters ({e}).") from None
    if isinstance(params, PaperSplitParams):
        split = prepare_paper(store, params)
    else:
        split = prepare(store, params)
    evals = EvalStore(store)
    stored = evals.split(split.split_id)  # type: ignore[arg-type]
    same_data = stored.data_fingerprint == split_info.get("data_fingerprint")
    if not same_data or _roles_digest(stored.roles) != split_info.get("roles"):
        raise EngineError(
            f"{path} was made on other data: this store's reviews give a different split "
            f"({params.describe()}). Import the run into a store of the same reviews "
            "(`dpl ingest` the same files)."
        )
    pending: list[tuple[int, ResultRow, str]] = []
    for number, record in lines:
        pending.append((number, _result(path, number, record, 0), str(record["reference_sha"])))
    checked: list[ResultRow] = []
    targets = {role: dict(stored.roles[role]) for role in ("val", "test")}
    config = {**run_info["config"], "split_id": split.split_id}
    which = config.get("split", "test")
    for number, row, reference_sha in pending:
        if targets.get(which, {}).get(row.user_id) != row.item_id:
            raise EngineError(
                f"{path}, line {number}: {row.user_id!r} has no {which} target {row.item_id!r} "
                "in this store's split."
            )
        reference = review_of(store, row.user_id, row.item_id).text
        if sha(reference) != reference_sha:
            raise EngineError(
                f"{path}, line {number}: the held-out review of {row.item_id!r} by "
                f"{row.user_id!r} has other text in this store than when the run was made."
            )
        checked.append(ResultRow(**{**asdict(row), "reference": reference}))
    run, _ = evals.find_or_create_run(split.split_id, config)  # type: ignore[arg-type]
    done = evals.done_cells(run.id)
    added = 0
    for row in checked:
        if (row.method, row.seed, row.user_id) in done:
            continue
        evals.add_result(ResultRow(**{**asdict(row), "run_id": run.id}))
        added += 1
    if added:
        status = str(run_info.get("status") or "stopped")
        evals.update_run(run.id, status=status, add_elapsed_s=float(run_info.get("elapsed_s") or 0))
    return Imported(evals.run(run.id), added, len(checked) - added)
