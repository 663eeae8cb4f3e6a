"""The paper's whole data preparation (``dpl split --paper``), stage by stage.

1. reviews: text of at least ``min_chars`` characters, rating, title and timestamp present;
2. items: a description of ``min/max_description_chars`` (paragraphs joined with spaces,
   a leading "Product Description" left out) and, with ``item_fields``, a title,
   categories and a rating count; reviews of other items go;
3. per user, newest first, a repeated item or a repeated text is kept once;
4. fixed point: items with at least ``min_item_reviewers`` reviewers, users with
   ``min_user_reviews`` to ``max_user_reviews`` reviews, until nothing changes;
5. whitespace collapsed (review text is not rewritten in the store: the ``paper``
   preset collapses it in prompts, and the duplicate check of stage 3 compares
   texts as written, as the paper's code does);
6. per user, by time: the last ``inputs`` reviews are inputs, the earlier ones the
   profile reviews;
7. second fixed point on profile reviews only: an item needs ``min_profile_item_users``
   users with it among their profile reviews; users keep only profile reviews of such
   items and go with fewer than ``min_profile_reviews``;
8. targets: test = the last input, validation = the one before; the profile the
   method sees is the profile reviews plus the other inputs (the validation review
   too when testing).

Every stage's counts are kept, so a preparation that leaves nobody says which stage
emptied it; ``suggest`` then relaxes that stage's thresholds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from user_store.eval_store import ItemRow, ReviewRow

from ..errors import EngineError


@dataclass(frozen=True)
class PaperSplitParams:
    min_chars: int = 200
    min_description_chars: int = 100
    max_description_chars: int = 2000
    item_fields: bool = True
    """Items need a title, categories and a rating count (not only a description)."""
    min_item_reviewers: int = 8
    min_user_reviews: int = 18
    max_user_reviews: int = 500
    inputs: int = 10
    min_profile_item_users: int = 5
    min_profile_reviews: int = 8

    kind = "paper"

    def check(self) -> None:
        def need(ok: bool, flag: str, value: Any, what: str) -> None:
            if not ok:
                raise EngineError(f"{flag} {value} is not allowed: {what}.")

        need(self.min_chars >= 0, "--min-chars", self.min_chars, "give 0 or more")
        need(
            0 <= self.min_description_chars <= self.max_description_chars,
            "--min-description-chars",
            self.min_description_chars,
            f"give 0 to --max-description-chars ({self.max_description_chars})",
        )
        need(
            self.min_item_reviewers >= 1,
            "--min-item-reviewers",
            self.min_item_reviewers,
            "give at least 1",
        )
        need(
            self.inputs >= 2,
            "--inputs",
            self.inputs,
            "each user needs a validation and a test input, so give at least 2",
        )
        need(
            self.min_user_reviews >= self.inputs + 1,
            "--min-user-reviews",
            self.min_user_reviews,
            f"a user needs more reviews than --inputs ({self.inputs})",
        )
        need(
            self.max_user_reviews >= self.min_user_reviews,
            "--max-user-reviews",
            self.max_user_reviews,
            f"it is below --min-user-reviews ({self.min_user_reviews})",
        )
        need(
            self.min_profile_item_users >= 1,
            "--min-profile-item-users",
            self.min_profile_item_users,
            "give at least 1",
        )
        need(
            self.min_profile_reviews >= 1,
            "--min-profile-reviews",
            self.min_profile_reviews,
            "give at least 1",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PaperSplitParams:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def describe(self) -> str:
        fields_note = ", title, categories and rating count" if self.item_fields else ""
        return (
            f"paper preparation: text >= {self.min_chars} chars; items with a "
            f"{self.min_description_chars}-{self.max_description_chars} char description"
            f"{fields_note}; items >= {self.min_item_reviewers} reviewers, users "
            f"{self.min_user_reviews}-{self.max_user_reviews} reviews; last {self.inputs} "
            f"reviews as inputs; profile items >= {self.min_profile_item_users} users, "
            f"profiles >= {self.min_profile_reviews} reviews"
        )


PAPER = PaperSplitParams()


@dataclass(frozen=True)
class Stage:
    number: int
    name: str
    reviews: int
    users: int
    items: int
    iterations: int = 0


@dataclass(frozen=True)
class PaperUser:
    user_id: str
    profile: tuple[str, ...]
    """Profile reviews left by stage 7, oldest first."""
    inputs: tuple[str, ...]
    """The last ``inputs`` reviews, oldest first: the last is the test target."""


@dataclass(frozen=True)
class Prepared:
    params: PaperSplitParams
    stages: tuple[Stage, ...]
    users: tuple[PaperUser, ...]

    @property
    def emptied_at(self) -> Stage | None:
        """The first stage that left no user, or None."""
        return next((s for s in self.stages if s.users == 0), None)

    @property
    def iterations(self) -> int:
        return sum(s.iterations for s in self.stages)


def _stage(number: int, name: str, kept: Sequence[ReviewRow], iterations: int = 0) -> Stage:
    return Stage(
        number,
        name,
        reviews=len(kept),
        users=len({r.user_id for r in kept}),
        items=len({r.item_id for r in kept}),
        iterations=iterations,
    )


def _item_ok(item: ItemRow | None, params: PaperSplitParams) -> bool:
    if item is None:
        return False
    if not params.min_description_chars <= item.description_chars <= params.max_description_chars:
        return False
    if params.item_fields:
        return bool(item.title) and item.categories > 0 and item.rating_number is not None
    return True


def _fixed_point(rows: list[ReviewRow], params: PaperSplitParams) -> tuple[list[ReviewRow], int]:
    iterations = 0
    while True:
        iterations += 1
        user_n: dict[str, int] = defaultdict(int)
        item_n: dict[str, int] = defaultdict(int)
        for r in rows:
            user_n[r.user_id] += 1
            item_n[r.item_id] += 1
        now = [
            r
            for r in rows
            if params.min_user_reviews <= user_n[r.user_id] <= params.max_user_reviews
            and item_n[r.item_id] >= params.min_item_reviewers
        ]
        if len(now) == len(rows):
            return rows, iterations
        rows = now


def _profile_fixed_point(
    profiles: dict[str, list[ReviewRow]], params: PaperSplitParams
) -> tuple[dict[str, list[ReviewRow]], int]:
    iterations = 0
    while True:
        iterations += 1
        item_users: dict[str, int] = defaultdict(int)
        for rows in profiles.values():
            for r in rows:
                item_users[r.item_id] += 1
        now: dict[str, list[ReviewRow]] = {}
        for user_id, rows in profiles.items():
            kept = [r for r in rows if item_users[r.item_id] >= params.min_profile_item_users]
            if len(kept) >= params.min_profile_reviews:
                now[user_id] = kept
        if now == profiles:
            return profiles, iterations
        profiles = now


def prepare_rows(
    reviews: Sequence[ReviewRow], items: Sequence[ItemRow], params: PaperSplitParams = PAPER
) -> Prepared:
    """The paper's preparation of ``reviews`` (ordered by user, time, item); pure, no store."""
    params.check()
    stages: list[Stage] = []
    # Every stored review has a rating and a time; a title may be empty.
    rows = [r for r in reviews if len(r.text) >= params.min_chars and r.title.strip()]
    stages.append(_stage(1, "reviews with enough text, a rating, title and time", rows))

    by_id = {i.item_id: i for i in items}
    rows = [r for r in rows if _item_ok(by_id.get(r.item_id), params)]
    stages.append(_stage(2, "reviews of items with a fitting description", rows))

    by_user: dict[str, list[ReviewRow]] = defaultdict(list)
    for r in rows:
        by_user[r.user_id].append(r)
    unique: list[ReviewRow] = []
    for user_rows in by_user.values():
        seen_items: set[str] = set()
        seen_texts: set[str] = set()
        kept: list[ReviewRow] = []
        for r in sorted(user_rows, key=lambda r: (r.timestamp, r.item_id), reverse=True):
            if r.item_id in seen_items or r.text in seen_texts:
                continue
            seen_items.add(r.item_id)
            seen_texts.add(r.text)
            kept.append(r)
        unique.extend(reversed(kept))
    stages.append(_stage(3, "one review per repeated item or text", unique))

    rows, iterations = _fixed_point(unique, params)
    stages.append(_stage(4, "items and users within the review counts", rows, iterations))
    stages.append(_stage(5, "whitespace collapsed (in prompts)", rows))

    inputs: dict[str, list[ReviewRow]] = {}
    profiles: dict[str, list[ReviewRow]] = {}
    by_user = defaultdict(list)
    for r in rows:
        by_user[r.user_id].append(r)
    for user_id, user_rows in by_user.items():
        ordered = sorted(user_rows, key=lambda r: (r.timestamp, r.item_id))
        inputs[user_id] = ordered[-params.inputs :]
        profiles[user_id] = ordered[: -params.inputs]
    stages.append(_stage(6, f"last {params.inputs} reviews as inputs, the rest profile", rows))

    profiles, iterations = _profile_fixed_point(profiles, params)
    left = [r for u in profiles for r in (*profiles[u], *inputs[u])]
    stages.append(_stage(7, "profiles on items enough profiles share", left, iterations))

    users = tuple(
        PaperUser(u, tuple(r.item_id for r in profiles[u]), tuple(r.item_id for r in inputs[u]))
        for u in sorted(profiles)
    )
    stages.append(
        Stage(
            8, "test and validation targets", len(left), len(users), len({r.item_id for r in left})
        )
    )
    return Prepared(params, tuple(stages), users)


# -- when a stage leaves nobody -----------------------------------------------------------
STAGE_RELAXATIONS: dict[int, tuple[dict[str, Any], ...]] = {
    1: ({"min_chars": 100}, {"min_chars": 50}, {"min_chars": 0}),
    2: (
        {"item_fields": False},
        {"item_fields": False, "min_description_chars": 0},
        {"item_fields": False, "min_description_chars": 0, "max_description_chars": 1_000_000},
    ),
    4: tuple(
        {"min_item_reviewers": items, "min_user_reviews": users, "inputs": inputs}
        for items, users, inputs in (
            (8, 15, 10),
            (6, 15, 10),
            (6, 12, 10),
            (5, 12, 10),
            (4, 12, 10),
            (3, 12, 10),
            (3, 11, 10),
            (3, 10, 8),
            (3, 8, 6),
            (3, 7, 5),
            (2, 6, 4),
            (2, 5, 3),
            (2, 4, 2),
        )
    ),
    7: tuple(
        {"min_profile_item_users": items, "min_profile_reviews": reviews}
        for items, reviews in ((4, 8), (3, 8), (3, 6), (2, 6), (2, 4), (2, 3), (2, 2), (1, 1))
    ),
}
"""Relaxed values to try, mildest first, for the stages that can leave nobody. Stage 4 lowers
``inputs`` with ``min_user_reviews``, since a user needs more reviews than inputs; stages 3,
5, 6 and 8 remove nobody by themselves."""

FLAGS = {
    "min_chars": "--min-chars",
    "min_description_chars": "--min-description-chars",
    "max_description_chars": "--max-description-chars",
    "item_fields": "--no-item-fields",
    "min_item_reviewers": "--min-item-reviewers",
    "min_user_reviews": "--min-user-reviews",
    "max_user_reviews": "--max-user-reviews",
    "inputs": "--inputs",
    "min_profile_item_users": "--min-profile-item-users",
    "min_profile_reviews": "--min-profile-reviews",
}


def flags(changes: dict[str, Any]) -> str:
    parts = []
    for name, value in changes.items():
        if name == "item_fields":
            parts.append("--item-fields" if value else "--no-item-fields")
        else:
            parts.append(f"{FLAGS[name]} {value}")
    return " ".join(parts)


@dataclass(frozen=True)
class PaperSuggestion:
    stage: Stage
    """The stage that left nobody under the original values."""
    changes: dict[str, Any]
    """Relaxed values, for that stage and for any later stage that then left nobody."""
    params: PaperSplitParams
    users: int
    """Users the whole preparation keeps with the changes."""


def _relax(
    reviews: Sequence[ReviewRow],
    items: Sequence[ItemRow],
    params: PaperSplitParams,
    stage: Stage,
    min_users: int,
) -> tuple[dict[str, Any], Prepared] | None:
    fallback: tuple[dict[str, Any], Prepared] | None = None
    for changes in STAGE_RELAXATIONS.get(stage.number, ()):
        trial = replace(params, **changes)
        try:
            trial.check()
        except EngineError:
            continue
        result = prepare_rows(reviews, items, trial)
        if next(s for s in result.stages if s.number == stage.number).users == 0:
            continue
        if result.emptied_at is None and len(result.users) >= min_users:
            return changes, result
        fallback = fallback or (changes, result)
    return fallback


def suggest(
    reviews: Sequence[ReviewRow],
    items: Sequence[ItemRow],
    params: PaperSplitParams,
    *,
    min_users: int = 1,
) -> PaperSuggestion | None:
    """Relaxed thresholds for the stage that left nobody, mildest first.

    When the relaxed preparation then leaves nobody at a later stage, that stage is
    relaxed too, and so on; None when some stage cannot be relaxed enough."""
    first = prepare_rows(reviews, items, params)
    stage = first.emptied_at
    if stage is None:
        return None
    changes: dict[str, Any] = {}
    current, emptied = params, stage
    for _ in range(len(STAGE_RELAXATIONS)):
        found = _relax(reviews, items, current, emptied, min_users)
        if found is None:
            return None
        step, result = found
        changes.update(step)
        current = replace(params, **changes)
        if result.emptied_at is None:
            return PaperSuggestion(stage, changes, current, len(result.users))
        emptied = result.emptied_at
    return None
