"""Making a prompt fit the model's context, and saying what had to give.

Prompts carry a list of reviews ordered from most to least relevant. When the
prompt plus the tokens to generate would not fit, the least relevant reviews
are shortened first, then dropped, one at a time; every change is reported
as a note that travels with the result. Nothing is cut silently, and when even
the bare prompt cannot fit the error says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models import ChatMessage, TextGenerator

from ..errors import EngineError

SHORT_CHARS = 300
"""What a review is shortened to before it is dropped altogether."""

Build = Callable[[list[int | None]], list[ChatMessage]]


class ContextBudgetError(EngineError):
    pass


def fit(
    generator: TextGenerator,
    build: Build,
    lengths: Sequence[int],
    *,
    limit: int,
    max_tokens: int,
    what: str,
    labels: Sequence[str] = (),
) -> tuple[list[ChatMessage], list[str]]:
    """Messages from ``build(limits)`` that fit with room for ``max_tokens``.

    ``lengths[i]`` is the character length of review i (most relevant first);
    ``limits[i]`` is how many characters of it to show, or None to drop it.
    ``labels[i]`` names review i in the notes."""
    limits: list[int | None] = [limit] * len(lengths)
    n_ctx = generator.n_ctx
    messages = build(limits)
    if not n_ctx:
        return messages, []
    budget = n_ctx - max_tokens
    shortened: list[int] = []
    dropped: list[int] = []
    needed = generator.count_tokens(messages)
    order = list(reversed(range(len(lengths))))
    steps = [(i, "shorten") for i in order if lengths[i] > SHORT_CHARS and limit > SHORT_CHARS]
    steps += [(i, "drop") for i in order]
    for i, action in steps:
        if needed <= budget:
            break
        if action == "shorten":
            limits[i] = SHORT_CHARS
            shortened.append(i)
        else:
            limits[i] = None
            dropped.append(i)
            if i in shortened:
                shortened.remove(i)
        messages = build(limits)
        needed = generator.count_tokens(messages)
    if needed > budget:
        raise ContextBudgetError(
            f"The {what} prompt needs {needed} tokens even without any past review, but "
            f"{generator.model_id} has a {n_ctx}-token context and {max_tokens} tokens are kept "
            "for the answer. Ask for fewer tokens (--max-tokens) or "
            f"{generator.larger_context}."
        )

    def names(indices: list[int]) -> str:
        return ", ".join(labels[i] if i < len(labels) else f"#{i + 1}" for i in sorted(indices))

    notes = []
    if shortened:
        notes.append(
            f"{what}: shortened {len(shortened)} review(s) to {SHORT_CHARS} characters to fit "
            f"the {n_ctx}-token context ({names(shortened)})"
        )
    if dropped:
        notes.append(
            f"{what}: left out {len(dropped)} least relevant review(s) to fit the {n_ctx}-token "
            f"context ({names(dropped)})"
        )
    return messages, notes
