"""Errors the store raises. Each carries a message a person can act on."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by ``user_store``; ``str(err)`` is user-facing."""


class UnknownUserError(StoreError):
    def __init__(self, user_id: str) -> None:
        super().__init__(
            f"No user {user_id!r} in the store. List users with `dpl users --search TEXT`."
        )
        self.user_id = user_id


class UnknownItemError(StoreError):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"No item {item_id!r} in the store. Import its reviews or metadata first.")
        self.item_id = item_id


class DatabaseError(StoreError):
    """The database file cannot be opened or is not a dpl database."""


class IngestError(StoreError):
    """An input file cannot be imported at all (missing, empty, unknown format)."""


class BadLineError(StoreError):
    """One input line is malformed; raised only in ``--strict`` mode."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason
