"""The two ways dpl can run the method: as published (``paper``) or with dpl's choices (``dpl``).

Both follow the same steps with the same k, m and n; they differ only where the
authors' released code made a choice that dpl makes differently:

=====================  =================================  ==================================
choice                 ``paper``                          ``dpl`` (the default)
=====================  =================================  ==================================
BM25                   rank-bm25's BM25Okapi on           bm25s on lower-cased, stemmed
                       whitespace tokens, as written      tokens without English stop words
KMeans restarts        scikit-learn's default, with       10, with the run's seed
                       random_state 42 whatever the seed
KMeans rows            the user's review, then the        the user's review, then the
                       others by user id; float32;        others oldest first; float64;
                       always n + 1 clusters              at most as many clusters as
                                                          distinct points
differences            free text                          a JSON object, one entry per
                                                          dimension (free text if that fails)
review text in         whitespace collapsed               HTML references and ``<br />``
prompts                                                   decoded
=====================  =================================  ==================================

Sampling is temperature 0.8, top_p 0.95 under both. The embedder is the
configured one under both (the paper's gte-Qwen2-1.5B-instruct is not bundled).
The preset is part of every cache key and evaluation run, so results of one are
never taken for the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from user_store.text import collapse_whitespace, readable

from ..types import PresetName

PRESETS: tuple[PresetName, ...] = ("dpl", "paper")

PAPER_KMEANS_SEED = 42


@dataclass(frozen=True)
class Preset:
    name: PresetName
    bm25: Literal["bm25s-stemmed", "okapi-whitespace"]
    kmeans_n_init: int | None
    """None: scikit-learn's default number of restarts."""
    kmeans_seed: int | None
    """None: the run's seed."""
    selection: Literal["dpl", "paper"]
    """Which rule picks the representative users: ``selection.representatives`` (dpl's) or
    ``selection.paper_representatives`` (the published code's row order and precision)."""
    structured_differences: bool
    text: Literal["readable", "whitespace"]
    description_chars: int | None = None
    """Item descriptions longer than this are shortened in prompts; None keeps them whole.
    Not one of the preset's own choices: the engine sets it from its configuration."""

    @property
    def clean(self) -> Callable[[str], str]:
        """How review text (and titles) are prepared for a prompt."""
        return readable if self.text == "readable" else collapse_whitespace

    def kmeans_random_state(self, seed: int) -> int:
        return seed if self.kmeans_seed is None else self.kmeans_seed

    def describe(self) -> str:
        bm25 = (
            "BM25 on stemmed tokens without stop words"
            if self.bm25 == "bm25s-stemmed"
            else "BM25Okapi on whitespace tokens"
        )
        restarts = (
            f"KMeans with {self.kmeans_n_init} restarts"
            if self.kmeans_n_init is not None
            else "KMeans with scikit-learn's default restarts"
        )
        seed = "the run's seed" if self.kmeans_seed is None else f"random_state {self.kmeans_seed}"
        if self.selection == "paper":
            seed += ", reviewers in user-id order, float32"
        diffs = "JSON differences" if self.structured_differences else "free-text differences"
        return f"{self.name}: {bm25}, {restarts} ({seed}), {diffs}"


DPL = Preset("dpl", "bm25s-stemmed", 10, None, "dpl", True, "readable")
PAPER = Preset("paper", "okapi-whitespace", None, PAPER_KMEANS_SEED, "paper", False, "whitespace")

_BY_NAME = {p.name: p for p in (DPL, PAPER)}


def preset(name: str) -> Preset:
    from ..errors import EngineError

    try:
        return _BY_NAME[name]  # type: ignore[index]
    except KeyError:
        raise EngineError(
            f"Unknown preset {name!r}: choose 'dpl' (the default) or 'paper'."
        ) from None
