"""The paper's evaluation split, computed on whatever data the store holds.

Reviews shorter than ``min_chars`` are dropped; then users outside
[``min_user_reviews``, ``max_user_reviews``] and items with fewer than
``min_item_reviewers`` reviewers are removed, again and again until nothing
changes (removing a user can push an item under the threshold and back). Each
remaining user's latest review is the test target, the one before it the
validation target, and everything earlier the profile.

The method may see only profiles (plus the validation reviews when testing):
``hidden_reviews`` lists every other review in the store, so neither a user's
own target nor anyone else's is ever retrieved or chosen as a comparison.
The split is stored with its parameters and the fingerprint of the data, so
the same thresholds on the same data give the same split. ``prepare_paper``
runs the paper's whole preparation instead (``paper_split``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from user_store import UserStore
from user_store.eval_store import EvalStore, ReviewRow, StoredSplit

from ..errors import EngineError
from .paper_split import PaperSplitParams, Prepared, prepare_rows

SplitName = Literal["val", "test"]


@dataclass(frozen=True)
class SplitParams:
    min_chars: int = 200
    """Reviews with shorter text are left out."""
    min_user_reviews: int = 18
    max_user_reviews: int = 500
    min_item_reviewers: int = 8

    def check(self) -> None:
        if self.min_chars < 0:
            raise EngineError(f"--min-chars must be 0 or more (got {self.min_chars}).")
        if self.min_user_reviews < 3:
            raise EngineError(
                f"--min-user-reviews must be at least 3 (got {self.min_user_reviews}): each user "
                "needs a test target, a validation target and at least one profile review."
            )
        if self.max_user_reviews < self.min_user_reviews:
            raise EngineError(
                f"--max-user-reviews ({self.max_user_reviews}) is below --min-user-reviews "
                f"({self.min_user_reviews})."
            )
        if self.min_item_reviewers < 1:
            raise EngineError(
                f"--min-item-reviewers must be at least 1 (got {self.min_item_reviewers})."
            )

    def describe(self) -> str:
        return (
            f"text >= {self.min_chars} chars, users with {self.min_user_reviews}-"
            f"{self.max_user_reviews} reviews, items with >= {self.min_item_reviewers} reviewers"
        )


PAPER_DEFAULTS = SplitParams()


@dataclass(frozen=True)
class UserSplit:
    user_id: str
    profile: tuple[str, ...]
    """Item ids of the profile reviews, oldest first."""
    val: str
    test: str


@dataclass(frozen=True)
class Split:
    params: SplitParams | PaperSplitParams
    users: tuple[UserSplit, ...]
    """Sorted by user id."""
    items: int
    reviews: int
    iterations: int
    fingerprint: str = ""
    split_id: int | None = None
    stages: tuple = ()
    """The paper preparation's per-stage counts (``paper_split.Stage``) when just computed."""
    all_reviews: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)
    """Every (user_id, item_id) review in the store when the split was made."""

    def user(self, user_id: str) -> UserSplit:
        for u in self.users:
            if u.user_id == user_id:
                return u
        raise EngineError(f"User {user_id!r} is not in this split.")

    def target_item(self, user: UserSplit, which: SplitName) -> str:
        return user.test if which == "test" else user.val

    def visible_reviews(self, which: SplitName) -> set[tuple[str, str]]:
        """What the method may see: every profile, plus the validation reviews when testing."""
        seen = {(u.user_id, i) for u in self.users for i in u.profile}
        if which == "test":
            seen |= {(u.user_id, u.val) for u in self.users}
        return seen

    def hidden_reviews(self, which: SplitName) -> frozenset[tuple[str, str]]:
        """Every review in the store the method must not see, targets of all users included."""
        targets = {(u.user_id, u.test) for u in self.users}
        if which == "val":
            targets |= {(u.user_id, u.val) for u in self.users}
        return frozenset((self.all_reviews - self.visible_reviews(which)) | targets)


def compute(rows: Sequence[ReviewRow], params: SplitParams) -> Split:
    """The split of ``rows`` (ordered by user, time, item) under ``params``; pure, no store."""
    params.check()
    latest: dict[tuple[str, str], ReviewRow] = {}
    for r in rows:
        if len(r.text.strip()) >= params.min_chars:
            latest[(r.user_id, r.item_id)] = r
    # A user who posted the same text twice keeps only the later copy.
    by_user: dict[str, list[ReviewRow]] = defaultdict(list)
    for r in sorted(latest.values(), key=lambda r: (r.user_id, r.timestamp, r.item_id)):
        by_user[r.user_id].append(r)
    kept: set[tuple[str, str]] = set()
    for user_reviews in by_user.values():
        seen_text: set[str] = set()
        for r in reversed(user_reviews):
            key = " ".join(r.text.split())
            if key not in seen_text:
                seen_text.add(key)
                kept.add((r.user_id, r.item_id))

    iterations = 0
    while True:
        iterations += 1
        user_n: dict[str, int] = defaultdict(int)
        item_n: dict[str, int] = defaultdict(int)
        for u, i in kept:
            user_n[u] += 1
            item_n[i] += 1
        now = {
            (u, i)
            for u, i in kept
            if params.min_user_reviews <= user_n[u] <= params.max_user_reviews
            and item_n[i] >= params.min_item_reviewers
        }
        if now == kept:
            break
        kept = now

    users: list[UserSplit] = []
    for user_id in sorted(by_user):
        mine = [r.item_id for r in by_user[user_id] if (user_id, r.item_id) in kept]
        if not mine:
            continue
        users.append(UserSplit(user_id, tuple(mine[:-2]), val=mine[-2], test=mine[-1]))
    return Split(
        params=params,
        users=tuple(users),
        items=len({i for _, i in kept}),
        reviews=len(kept),
        iterations=iterations,
        all_reviews=frozenset((r.user_id, r.item_id) for r in rows),
    )


def params_from_dict(params: dict) -> SplitParams | PaperSplitParams:
    if params.get("kind") == PaperSplitParams.kind:
        return PaperSplitParams.from_dict(params)
    return SplitParams(**params)


def params_dict(params: SplitParams | PaperSplitParams) -> dict:
    return params.to_dict() if isinstance(params, PaperSplitParams) else asdict(params)


def _from_stored(
    stored: StoredSplit, all_reviews: Iterable[tuple[str, str]], stages: tuple = ()
) -> Split:
    params = params_from_dict(stored.params)
    profile: dict[str, list[str]] = defaultdict(list)
    for u, i in stored.roles["profile"]:
        profile[u].append(i)
    val = dict(stored.roles["val"])
    test = dict(stored.roles["test"])
    users = tuple(
        UserSplit(u, tuple(profile.get(u, ())), val=val[u], test=test[u]) for u in sorted(test)
    )
    return Split(
        params=params,
        users=users,
        items=stored.items,
        reviews=stored.reviews,
        iterations=stored.iterations,
        fingerprint=stored.data_fingerprint,
        split_id=stored.id,
        all_reviews=frozenset(all_reviews),
        stages=stages,
    )


def _save(
    evals: EvalStore, params: dict, fingerprint: str, iterations: int, users: Sequence[UserSplit]
) -> StoredSplit:
    roles = {
        "profile": [(u.user_id, i) for u in users for i in u.profile],
        "val": [(u.user_id, u.val) for u in users],
        "test": [(u.user_id, u.test) for u in users],
    }
    return evals.save_split(params, fingerprint, iterations=iterations, roles=roles)


def _rows_or_fail(evals: EvalStore) -> list[ReviewRow]:
    rows = evals.review_rows()
    if not rows:
        raise EngineError(
            "The store holds no reviews. Import some first: `dpl ingest FILE` or "
            "`dpl ingest --sample`."
        )
    return rows


def paper_users(prepared: Prepared) -> tuple[UserSplit, ...]:
    """Targets and profiles as the paper builds them: test = the last input, validation =
    the one before, profile = the profile reviews and the other inputs."""
    return tuple(
        UserSplit(
            u.user_id, (*u.profile, *u.inputs[:-2]), val=u.inputs[-2], test=u.inputs[-1]
        )
        for u in prepared.users
    )


def prepare_paper(store: UserStore, params: PaperSplitParams) -> Split:
    """The paper's whole preparation (``paper_split``) on the store, kept there.

    The stored split is reused when the parameters and the data (reviews and item
    metadata) are the same; its per-stage counts are always recomputed."""
    params.check()
    evals = EvalStore(store)
    rows = _rows_or_fail(evals)
    items = evals.item_rows()
    prepared = prepare_rows(rows, items, params)
    fingerprint = evals.fingerprint(rows) + ":" + evals.fingerprint_items(items)
    users = paper_users(prepared)
    stored = evals.find_split(params.to_dict(), fingerprint) or _save(
        evals, params.to_dict(), fingerprint, prepared.iterations, users
    )
    return _from_stored(stored, [(r.user_id, r.item_id) for r in rows], prepared.stages)


def prepare(store: UserStore, params: SplitParams = PAPER_DEFAULTS) -> Split:
    """Compute the split on the store's reviews and keep it there (reused when identical)."""
    params.check()
    evals = EvalStore(store)
    rows = _rows_or_fail(evals)
    fingerprint = evals.fingerprint(rows)
    all_reviews = [(r.user_id, r.item_id) for r in rows]
    found = evals.find_split(asdict(params), fingerprint)
    if found is not None:
        return _from_stored(found, all_reviews)
    split = compute(rows, params)
    stored = _save(evals, asdict(params), fingerprint, split.iterations, split.users)
    return _from_stored(stored, all_reviews)


def load(store: UserStore, split_id: int | None = None) -> Split | None:
    """A stored split (the latest when no id is given), or None when none was made."""
    evals = EvalStore(store)
    stored = evals.split(split_id) if split_id is not None else evals.latest_split()
    if stored is None:
        return None
    return _from_stored(stored, evals.review_keys())


# -- when the thresholds leave too few users ------------------------------------------
@dataclass(frozen=True)
class Suggestion:
    params: SplitParams
    users: int
    items: int
    reviews: int


GRID_USER_REVIEWS = (18, 15, 12, 10, 8, 7, 6, 5, 4, 3)
GRID_ITEM_REVIEWERS = (8, 7, 6, 5, 4, 3, 2)
GRID_MIN_CHARS = (200, 100, 0)


def strictness(params: SplitParams, reference: SplitParams = PAPER_DEFAULTS) -> float:
    """How close ``params`` stay to ``reference``: the smaller of the two count thresholds,
    each as a fraction of the reference's (1.0 = as strict as the paper)."""
    return min(
        params.min_user_reviews / reference.min_user_reviews,
        params.min_item_reviewers / reference.min_item_reviewers,
    )


def suggest(
    rows: Sequence[ReviewRow],
    params: SplitParams = PAPER_DEFAULTS,
    *,
    min_users: int = 20,
    limit: int = 3,
) -> list[Suggestion]:
    """Relaxed thresholds that keep at least ``min_users`` users, strictest first.

    Every grid point at or below the given thresholds is tried, at the given review length
    first (shorter lengths only when none works). Points are ranked by ``strictness``, so
    neither the per-user nor the per-item threshold is loosened much more than the other;
    ties go to the point keeping more users."""
    chars = [params.min_chars] + [c for c in GRID_MIN_CHARS if c < params.min_chars]
    for min_chars in chars:
        found: list[Suggestion] = []
        for item_min in [n for n in GRID_ITEM_REVIEWERS if n <= params.min_item_reviewers]:
            for user_min in [n for n in GRID_USER_REVIEWS if n <= params.min_user_reviews]:
                trial = SplitParams(min_chars, user_min, params.max_user_reviews, item_min)
                result = compute(rows, trial)
                if len(result.users) >= min_users:
                    found.append(Suggestion(trial, len(result.users), result.items, result.reviews))
                    break  # looser per-user minimums only keep more users
        if found:
            found.sort(key=lambda s: (-strictness(s.params, params), -s.users))
            return found[:limit]
    return []
