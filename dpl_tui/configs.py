"""Where the front ends turn saved settings and options into the engine's configurations.

The app and every command build their ``EngineConfig`` here, from the saved ``Settings`` and
the options they were given; `dpl eval` and `dpl prepare` hand their options over as one frozen
request, so an option travels by name from the command line to the field it sets.

The front ends share every default but one, item descriptions in prompts when no
``--max-description-chars`` is given:

- the app, `dpl compare`, `dpl generate` and `dpl prepare` cut them at the
  ``max_description_chars`` setting (1000): ``engine_config`` and ``command_engine_config``;
- `dpl eval`, `dpl prepare --split` and `dpl tune` keep them whole
  (``EVALUATION_DESCRIPTION_CHARS``): the paper's preparation already keeps only items with
  100 to 2,000 characters of description, and results computed without a cut keep their cache
  keys (docs/readme/engine.md, "Item descriptions in prompts").

The engine's types load inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpl_engine import EngineConfig
    from dpl_engine.evaluation.runner import EvalConfig
    from dpl_engine.evaluation.split import SplitParams
    from user_store.config import Settings

DEFAULT_SEED = 42
"""The seed where no --seed is given."""
EVALUATION_DESCRIPTION_CHARS: int | None = None
"""Item descriptions in an evaluation's prompts where no --max-description-chars is given:
whole (the app and the other commands use the ``max_description_chars`` setting)."""
SPLITS = ("val", "test")
"""The evaluation's targets: each user's validation or test review."""


@dataclass(frozen=True)
class EngineOptions:
    """The method's options as a command was given them; None (or False) leaves each to the
    saved setting or the engine's default."""

    k: int | None = None
    """Past reviews to retrieve (--k)."""
    m: int | None = None
    """Other reviewers a comparison item needs (--m)."""
    n: int | None = None
    """Representative users per comparison item (--n)."""
    preset: str | None = None
    """'dpl' or 'paper' (--preset); checked when the config is built."""
    seed: int | None = None
    """Seeds KMeans and both samplers (--seed of compare and generate); None keeps the
    engine's seed and unseeded sampling (an evaluation sets the seed of each run itself)."""
    max_tokens: int | None = None
    """Tokens per generated review (--max-tokens)."""
    analysis_max_tokens: int | None = None
    """Tokens per differences or profile call (--analysis-max-tokens)."""
    max_review_chars: int | None = None
    """Reviews are shortened to this in prompts (--max-review-chars)."""
    max_description_chars: int | None = None
    """Item descriptions are cut to this in prompts (--max-description-chars); None: the front
    end's default (see the module's docstring)."""
    measured_in_profile: bool = False
    """--measured-in-profile."""
    drop_uninformative: bool = False
    """--drop-uninformative."""


@dataclass(frozen=True)
class SplitThresholds:
    """The evaluation split's thresholds as given; None: the paper's value."""

    min_chars: int | None = None
    min_user_reviews: int | None = None
    max_user_reviews: int | None = None
    min_item_reviewers: int | None = None

    @property
    def given(self) -> bool:
        """Whether any threshold was given (else the latest stored split is used)."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def params(self) -> SplitParams:
        """The paper's thresholds with the given ones in their place."""
        from dpl_engine.evaluation.split import PAPER_DEFAULTS

        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(PAPER_DEFAULTS, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class EvalRequest:
    """One `dpl eval` run: what is generated and scored, on which split, with which models."""

    methods: str = "none,rag,profile,dpl"
    """Comma-separated, as given to --methods; checked by ``eval_config``."""
    users: int | None = None
    """The first N users of the split's order (--users); None: all."""
    seeds: tuple[int, ...] = ()
    """As given (--seed, repeatable); none given: ``DEFAULT_SEED``."""
    split: str = "test"
    """'test' or 'val' targets (--split)."""
    options: EngineOptions = field(default_factory=EngineOptions)
    thresholds: SplitThresholds = field(default_factory=SplitThresholds)
    model: str | None = None
    adapter: str | None = None
    personal: bool = True
    judge_model: Path | None = None
    concurrency: int = 1
    """Users evaluated (or prepared) at once."""


@dataclass(frozen=True)
class PrepareRequest:
    """One `dpl prepare`: whose comparisons, differences and profiles are computed ahead."""

    user_ids: tuple[str, ...] = ()
    all_users: bool = False
    split: str | None = None
    """'test' or 'val': the targets `dpl eval --split` reads; None: each user's default target,
    the one the app and `dpl generate` use."""
    users: int | None = None
    """With a split: the first N users `dpl eval --users N` takes."""
    seeds: tuple[int, ...] = ()
    """As given (--seed, repeatable; one at most without a split)."""
    rest: bool = False
    """Also the user's other comparable items (without a split)."""
    model: str | None = None
    adapter: str | None = None
    concurrency: int = 1
    options: EngineOptions = field(default_factory=EngineOptions)
    thresholds: SplitThresholds = field(default_factory=SplitThresholds)

    def check(self) -> None:
        from dpl_engine import EngineError

        if self.concurrency < 1:
            raise EngineError(f"--concurrency must be at least 1 (got {self.concurrency}).")
        check_split(self.split)
        if not self.user_ids and not self.all_users and not (self.split and self.users):
            raise EngineError(
                "Name the users to prepare, or pass --all (with --split, --users N also works)."
            )
        if self.split is None:
            refuse_unused(
                self._unused_options(),
                "with --split",
                "add --split val/test to prepare the evaluation's targets",
            )
        else:
            refuse_unused(
                self._unused_options(),
                "without --split",
                "leave out --split to prepare each user's default target",
            )

    def _unused_options(self) -> list[str]:
        """The options given that this kind of preparation would ignore: default targets use
        the app's settings under one seed; a split's targets take no --rest."""
        if self.split is not None:
            return ["--rest"] if self.rest else []
        options, thresholds = self.options, self.thresholds
        named = {
            "--users": self.users,
            "--max-tokens": options.max_tokens,
            "--analysis-max-tokens": options.analysis_max_tokens,
            "--max-review-chars": options.max_review_chars,
            "--min-chars": thresholds.min_chars,
            "--min-user-reviews": thresholds.min_user_reviews,
            "--max-user-reviews": thresholds.max_user_reviews,
            "--min-item-reviewers": thresholds.min_item_reviewers,
        }
        unused = [name for name, value in named.items() if value is not None]
        if len(self.seeds) > 1:
            unused.append("more than one --seed")
        return unused

    def default_options(self) -> EngineOptions:
        """Without a split: the options of `dpl generate`, under its first seed. The token and
        review-length options are those of ``evaluation()`` only."""
        return replace(
            self.options,
            seed=seeds(self.seeds)[0],
            max_tokens=None,
            analysis_max_tokens=None,
            max_review_chars=None,
        )

    def evaluation(self) -> EvalRequest:
        """With a split: the `dpl eval` request whose dpl targets are prepared."""
        assert self.split is not None, "a request without a split prepares default targets"
        return EvalRequest(
            methods="dpl",
            users=self.users,
            seeds=self.seeds,
            split=self.split,
            options=self.options,
            thresholds=self.thresholds,
            model=self.model,
            adapter=self.adapter,
            concurrency=self.concurrency,
        )


# -- the engine's configuration ------------------------------------------------------------
def engine_config(settings: Settings, **overrides: Any) -> EngineConfig:
    """The app's engine: k, m, n, the preset and the description cut from ``settings``, the
    engine's defaults for the rest (sampling unseeded). ``overrides`` replace fields by name."""
    from dpl_engine import EngineConfig

    config = EngineConfig(
        k=settings.k,
        m=settings.m,
        n=settings.n,
        preset=settings.preset,  # type: ignore[arg-type]
        max_description_chars=settings.max_description_chars,
    )
    return replace(config, **overrides) if overrides else config


def command_engine_config(settings: Settings, options: EngineOptions) -> EngineConfig:
    """`dpl compare`, `dpl generate` and `dpl prepare` without a split: the app's engine with
    ``options`` over it. The preset is checked first, then the values in use (the saved k, m
    and n included)."""
    config = _with_options(engine_config(settings), options)
    at_least_one(
        ("--max-description-chars", options.max_description_chars),
        ("--k", config.k),
        ("--m", config.m),
        ("--n", config.n),
        ("--max-tokens", options.max_tokens),
    )
    return config


def evaluation_engine_config(settings: Settings, options: EngineOptions) -> EngineConfig:
    """`dpl eval`, `dpl prepare --split` and `dpl tune`: the given values are checked first,
    then the engine is the app's with whole descriptions and ``options`` over it."""
    at_least_one(
        ("--k", options.k),
        ("--m", options.m),
        ("--n", options.n),
        ("--max-tokens", options.max_tokens),
        ("--analysis-max-tokens", options.analysis_max_tokens),
        ("--max-review-chars", options.max_review_chars),
        ("--max-description-chars", options.max_description_chars),
    )
    whole = engine_config(settings, max_description_chars=EVALUATION_DESCRIPTION_CHARS)
    return _with_options(whole, options)


def _with_options(config: EngineConfig, options: EngineOptions) -> EngineConfig:
    """``options`` over ``config``; the preset (given, else the config's) is checked."""
    from dpl_engine.method.presets import preset as check_preset

    check_seed(options.seed)
    seeded = {} if options.seed is None else {"seed": options.seed}
    return replace(
        config,
        k=_given(options.k, config.k),
        m=_given(options.m, config.m),
        n=_given(options.n, config.n),
        preset=check_preset(options.preset or config.preset).name,
        generation=replace(
            config.generation,
            max_tokens=options.max_tokens or config.generation.max_tokens,
            **seeded,
        ),
        analysis=replace(
            config.analysis,
            max_tokens=options.analysis_max_tokens or config.analysis.max_tokens,
            **seeded,
        ),
        max_review_chars=options.max_review_chars or config.max_review_chars,
        measured_in_profile=options.measured_in_profile,
        drop_uninformative=options.drop_uninformative,
        max_description_chars=_given(options.max_description_chars, config.max_description_chars),
        **seeded,
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def at_least_one(*named: tuple[str, int | None]) -> None:
    """Raise for the first given value below 1, named by its option."""
    from dpl_engine import EngineError

    for name, value in named:
        if value is not None and value < 1:
            raise EngineError(f"{name} must be at least 1 (got {value}).")


# -- the evaluation ------------------------------------------------------------------------
def eval_config(settings: Settings, request: EvalRequest) -> EvalConfig:
    """The evaluation ``request`` asks for: its engine options checked, then its methods."""
    from dpl_engine.evaluation.runner import EvalConfig

    engine = evaluation_engine_config(settings, request.options)
    return EvalConfig(
        methods=methods(request.methods),  # type: ignore[arg-type]
        seeds=seeds(request.seeds),
        users=request.users,
        split=request.split,  # type: ignore[arg-type]
        engine=engine,
    )


def methods(text: str) -> tuple[str, ...]:
    """The methods of a comma-separated --methods, each once, in the order given."""
    from dpl_engine import METHODS, EngineError

    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    for name in names:
        if name not in METHODS:
            raise EngineError(f"Unknown method {name!r} in --methods: use {', '.join(METHODS)}.")
    if not names:
        raise EngineError("--methods is empty: give e.g. none,rag,profile,dpl.")
    return names


def seeds(given: tuple[int, ...] | list[int] | None) -> tuple[int, ...]:
    """The given seeds, each once, in order; none given: ``DEFAULT_SEED``. Raises for one out
    of range (``check_seed``)."""
    for seed in given or ():
        check_seed(seed)
    return tuple(dict.fromkeys(given or [DEFAULT_SEED]))


MAX_SEED = 2**31 - 1
"""The largest --seed: every seeded part (KMeans, llama.cpp, dpl's sampler, torch) takes it,
and none reads it as "no seed" (llama.cpp takes 0xFFFFFFFF, -1 as a uint32, as "random")."""


def refuse_unused(options: list[str], where: str, remedy: str) -> None:
    """Raise for options given that only apply ``where`` (as "with --split"), so they would
    be ignored here; nothing when ``options`` is empty."""
    from dpl_engine import EngineError

    if not options:
        return
    several = len(options) > 1
    raise EngineError(
        f"{', '.join(options)} only {'apply' if several else 'applies'} {where}: "
        f"drop {'them' if several else 'it'}, or {remedy}."
    )


def check_seed(seed: int | None) -> None:
    """Raise for a --seed outside 0 to ``MAX_SEED`` (None: no seed given)."""
    from dpl_engine import EngineError

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise EngineError(
            f"--seed {seed} is out of range: give a whole number from 0 to {MAX_SEED}."
        )


def check_split(which: str | None) -> None:
    """A --split other than 'val' or 'test' is a user error (None: no split asked for)."""
    from dpl_engine import EngineError

    if which is not None and which not in SPLITS:
        raise EngineError(f"--split must be 'val' or 'test' (got {which!r}).")
