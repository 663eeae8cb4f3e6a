"""Evaluation splits and runs in the user store: what ``dpl split`` and ``dpl eval`` keep.

A split records, per user, which reviews are the profile and which are the
validation and test targets, with the thresholds that produced it. A run
records its configuration and one row per (method, seed, user) with the
generated text and its scores, so an interrupted evaluation resumes where it
stopped and a finished one can be printed again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .errors import StoreError
from .store import UserStore
from .types import Review


@dataclass(frozen=True)
class ReviewRow:
    """The fields a split looks at, for every review in the store."""

    user_id: str
    item_id: str
    rating: float
    title: str
    text: str
    timestamp: int


@dataclass(frozen=True)
class ItemRow:
    """The item fields the paper's preparation looks at."""

    item_id: str
    title: str
    description_chars: int
    """Length of the description as the paper measures it: its paragraphs joined with
    spaces, a leading "Product Description" paragraph left out."""
    categories: int
    rating_number: int | None
    metadata_missing: bool


@dataclass(frozen=True)
class StoredSplit:
    id: int
    params: dict[str, Any]
    data_fingerprint: str
    users: int
    items: int
    reviews: int
    iterations: int
    created_at: str
    roles: dict[str, list[tuple[str, str]]]
    """'profile' / 'val' / 'test' -> (user_id, item_id) pairs, each user's in history order."""


@dataclass(frozen=True)
class StoredRun:
    id: int
    split_id: int
    config: dict[str, Any]
    status: str
    elapsed_s: float
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class ResultRow:
    run_id: int
    method: str
    seed: int
    user_id: str
    item_id: str
    generation_id: int | None
    text: str
    reference: str
    rouge1: float
    rougeL: float  # noqa: N815 - the metric's name
    meteor: float | None
    judge: float | None
    judge_raw: str | None
    llm_calls: int
    comparison_items: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    notes: list[str]
    created_at: str
    differences: int = 0
    """LLM difference entries (dimensions, or free-text answers) the result was built on."""
    uninformative: int = 0
    """How many of them the informativeness check flagged."""


_RESULT_COLUMNS = (
    "run_id, method, seed, user_id, item_id, generation_id, text, reference, rouge1, rougeL,"
    " meteor, judge, judge_raw, llm_calls, comparison_items, prompt_tokens, completion_tokens,"
    " seconds, notes, created_at, differences, uninformative"
)


def canonical(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class EvalStore:
    """Evaluation tables of one ``UserStore`` (created by its migrations)."""

    def __init__(self, store: UserStore) -> None:
        self.store = store
        self.conn = store.conn
        self._lock = store._lock

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # -- the data a split is computed from ------------------------------------------
    def review_rows(self) -> list[ReviewRow]:
        """Every review, ordered by user, time and item (a stable order for ties)."""
        return [
            ReviewRow(u, i, float(r), t or "", x or "", int(ts))
            for u, i, r, t, x, ts in self._rows(
                "SELECT user_id, item_id, rating, title, text, timestamp FROM reviews"
                " ORDER BY user_id, timestamp, item_id"
            )
        ]

    def item_rows(self) -> list[ItemRow]:
        found: list[ItemRow] = []
        for item_id, title, description, categories, raw, missing in self._rows(
            "SELECT id, title, description, categories, raw, metadata_missing FROM items"
            " ORDER BY id"
        ):
            record = _json_object(raw)
            paragraphs = record.get("description")
            if not isinstance(paragraphs, list):
                paragraphs = description.split("\n") if description else []
            paragraphs = [str(p) for p in paragraphs]
            if paragraphs and paragraphs[0].strip() == "Product Description":
                paragraphs = paragraphs[1:]
            number = record.get("rating_number")
            found.append(
                ItemRow(
                    item_id=item_id,
                    title="" if missing else (title or ""),
                    description_chars=len(" ".join(paragraphs)),
                    categories=len(_json_list(categories)),
                    rating_number=int(number) if isinstance(number, int | float) else None,
                    metadata_missing=bool(missing),
                )
            )
        return found

    def review_keys(self) -> list[tuple[str, str]]:
        return [(u, i) for u, i in self._rows("SELECT user_id, item_id FROM reviews")]

    def fingerprint(self, rows: Iterable[ReviewRow]) -> str:
        """A hash of the reviews' content: the same data gives the same fingerprint."""
        h = hashlib.sha256()
        for r in rows:
            h.update(
                json.dumps(
                    [r.user_id, r.item_id, r.rating, r.title, r.text, r.timestamp],
                    ensure_ascii=False,
                ).encode("utf-8")
            )
            h.update(b"\n")
        return h.hexdigest()

    def fingerprint_items(self, items: Iterable[ItemRow]) -> str:
        """A hash of the item fields a paper split depends on."""
        h = hashlib.sha256()
        for i in items:
            h.update(json.dumps(list(asdict(i).values()), ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    # -- splits ---------------------------------------------------------------------
    def find_split(self, params: Mapping[str, Any], fingerprint: str) -> StoredSplit | None:
        rows = self._rows(
            "SELECT id FROM eval_splits WHERE params_hash = ? AND data_fingerprint = ?",
            (sha(canonical(params)), fingerprint),
        )
        return self.split(rows[0][0]) if rows else None

    def save_split(
        self,
        params: Mapping[str, Any],
        fingerprint: str,
        *,
        iterations: int,
        roles: Mapping[str, Sequence[tuple[str, str]]],
    ) -> StoredSplit:
        """Store a split (or return the identical one already stored)."""
        found = self.find_split(params, fingerprint)
        if found is not None:
            return found
        rows: list[tuple[str, str, str, int]] = []
        position: dict[str, int] = {}
        for role in ("profile", "val", "test"):
            for user_id, item_id in roles.get(role, ()):
                rows.append((user_id, item_id, role, 0))
        # Positions follow each user's order: profile (oldest first), then val, then test.
        ordered: list[tuple[str, str, str, int]] = []
        for user_id, item_id, role, _ in sorted(
            rows, key=lambda r: (r[0], ("profile", "val", "test").index(r[2]))
        ):
            n = position.get(user_id, 0)
            position[user_id] = n + 1
            ordered.append((user_id, item_id, role, n))
        users = {u for u, _, _, _ in ordered}
        items = {i for _, i, _, _ in ordered}
        with self._lock, self.conn:
            cur = self.conn.execute(
                "INSERT INTO eval_splits (params, params_hash, data_fingerprint, users, items,"
                " reviews, iterations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    canonical(params),
                    sha(canonical(params)),
                    fingerprint,
                    len(users),
                    len(items),
                    len(ordered),
                    iterations,
                    _now(),
                ),
            )
            split_id = int(cur.lastrowid)
            self.conn.executemany(
                "INSERT INTO eval_split_reviews (split_id, user_id, item_id, role, position)"
                " VALUES (?, ?, ?, ?, ?)",
                [(split_id, u, i, role, n) for u, i, role, n in ordered],
            )
        return self.split(split_id)

    def split(self, split_id: int) -> StoredSplit:
        rows = self._rows(
            "SELECT id, params, data_fingerprint, users, items, reviews, iterations, created_at"
            " FROM eval_splits WHERE id = ?",
            (split_id,),
        )
        if not rows:
            raise StoreError(f"No evaluation split {split_id!r} in the store. Run `dpl split`.")
        sid, params, fp, users, items, reviews, iterations, created = rows[0]
        roles: dict[str, list[tuple[str, str]]] = {"profile": [], "val": [], "test": []}
        for user_id, item_id, role in self._rows(
            "SELECT user_id, item_id, role FROM eval_split_reviews WHERE split_id = ?"
            " ORDER BY user_id, position",
            (split_id,),
        ):
            roles[role].append((user_id, item_id))
        return StoredSplit(
            sid, json.loads(params), fp, users, items, reviews, iterations, created, roles
        )

    def latest_split(self) -> StoredSplit | None:
        rows = self._rows("SELECT id FROM eval_splits ORDER BY id DESC LIMIT 1")
        return self.split(rows[0][0]) if rows else None

    # -- runs -----------------------------------------------------------------------
    def find_or_create_run(
        self, split_id: int, config: Mapping[str, Any]
    ) -> tuple[StoredRun, bool]:
        """The run with this configuration, created if new; the flag says whether it existed."""
        key = sha(canonical(config))
        with self._lock, self.conn:
            rows = self.conn.execute(
                "SELECT id FROM eval_runs WHERE config_hash = ?", (key,)
            ).fetchall()
            if rows:
                return self.run(rows[0][0]), True
            now = _now()
            cur = self.conn.execute(
                "INSERT INTO eval_runs (split_id, config, config_hash, status, elapsed_s,"
                " created_at, updated_at) VALUES (?, ?, ?, 'running', 0, ?, ?)",
                (split_id, canonical(config), key, now, now),
            )
            run_id = int(cur.lastrowid)
        return self.run(run_id), False

    def run(self, run_id: int) -> StoredRun:
        rows = self._rows(
            "SELECT id, split_id, config, status, elapsed_s, created_at, updated_at"
            " FROM eval_runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            raise StoreError(
                f"No evaluation run {run_id!r} in the store. List runs with `dpl eval --list`."
            )
        rid, split_id, config, status, elapsed, created, updated = rows[0]
        return StoredRun(
            rid, split_id, json.loads(config), status, float(elapsed), created, updated
        )

    def runs(self) -> list[StoredRun]:
        return [self.run(r[0]) for r in self._rows("SELECT id FROM eval_runs ORDER BY id")]

    def update_run(self, run_id: int, *, status: str, add_elapsed_s: float) -> None:
        with self._lock, self.conn:
            self.conn.execute(
                "UPDATE eval_runs SET status = ?, elapsed_s = elapsed_s + ?, updated_at = ?"
                " WHERE id = ?",
                (status, add_elapsed_s, _now(), run_id),
            )

    # -- results --------------------------------------------------------------------
    def done_cells(self, run_id: int) -> set[tuple[str, int, str]]:
        """(method, seed, user_id) of every finished generation of the run."""
        return {
            (m, int(s), u)
            for m, s, u in self._rows(
                "SELECT method, seed, user_id FROM eval_results WHERE run_id = ?", (run_id,)
            )
        }

    def add_result(self, row: ResultRow) -> None:
        with self._lock, self.conn:
            self.conn.execute(
                f"INSERT INTO eval_results ({_RESULT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.run_id,
                    row.method,
                    row.seed,
                    row.user_id,
                    row.item_id,
                    row.generation_id,
                    row.text,
                    row.reference,
                    row.rouge1,
                    row.rougeL,
                    row.meteor,
                    row.judge,
                    row.judge_raw,
                    row.llm_calls,
                    row.comparison_items,
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.seconds,
                    json.dumps(row.notes, ensure_ascii=False),
                    row.created_at or _now(),
                    row.differences,
                    row.uninformative,
                ),
            )

    def set_judge(
        self, run_id: int, method: str, seed: int, user_id: str, judge: float | None, raw: str
    ) -> None:
        with self._lock, self.conn:
            self.conn.execute(
                "UPDATE eval_results SET judge = ?, judge_raw = ?"
                " WHERE run_id = ? AND method = ? AND seed = ? AND user_id = ?",
                (judge, raw, run_id, method, seed, user_id),
            )

    def set_meteor(self, run_id: int, method: str, seed: int, user_id: str, value: float) -> None:
        with self._lock, self.conn:
            self.conn.execute(
                "UPDATE eval_results SET meteor = ?"
                " WHERE run_id = ? AND method = ? AND seed = ? AND user_id = ?",
                (value, run_id, method, seed, user_id),
            )

    def results(self, run_id: int) -> list[ResultRow]:
        rows = self._rows(
            f"SELECT {_RESULT_COLUMNS} FROM eval_results WHERE run_id = ?"
            " ORDER BY method, seed, user_id",
            (run_id,),
        )
        out = []
        for r in rows:
            values = list(r)
            values[18] = json.loads(values[18])
            out.append(ResultRow(*values))
        return out


def review_of(store: UserStore, user_id: str, item_id: str) -> Review:
    found = store.review(user_id, item_id)
    if found is None:
        raise StoreError(
            f"The split names a review of {item_id!r} by {user_id!r} that is no longer in the "
            "store. Recompute the split (`dpl split`)."
        )
    return found
