"""dpl_tui.configs: the one place where settings and options become the engine's configs.

The front ends' defaults differ in one named place (item descriptions: the setting for the app
and `dpl compare/generate/prepare`, whole for `dpl eval/prepare --split/tune`); an option given
to `dpl prepare --split` reaches the evaluation's config by name; and no command module imports
another."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from dpl_engine import EngineConfig, EngineError
from dpl_engine.evaluation.split import PAPER_DEFAULTS
from dpl_tui import configs
from dpl_tui.configs import (
    MAX_SEED,
    EngineOptions,
    EvalRequest,
    PrepareRequest,
    SplitThresholds,
    command_engine_config,
    engine_config,
    eval_config,
    evaluation_engine_config,
)
from user_store.config import Settings

COMMANDS = Path(configs.__file__).parent / "commands"


def test_the_app_engine_is_the_saved_settings_over_the_engine_defaults() -> None:
    settings = Settings(k=5, m=3, n=2, preset="paper", max_description_chars=700)
    assert engine_config(settings) == EngineConfig(
        k=5, m=3, n=2, preset="paper", max_description_chars=700
    )
    assert engine_config(Settings()).max_description_chars == 1000
    assert engine_config(settings).generation.seed is None  # the app samples unseeded
    assert engine_config(settings, seed=7).seed == 7


def test_descriptions_are_cut_at_the_setting_except_in_an_evaluation() -> None:
    settings = Settings(max_description_chars=700)
    assert command_engine_config(settings, EngineOptions()).max_description_chars == 700
    assert evaluation_engine_config(settings, EngineOptions()).max_description_chars is None
    given = EngineOptions(max_description_chars=300)
    assert command_engine_config(settings, given).max_description_chars == 300
    assert evaluation_engine_config(settings, given).max_description_chars == 300


def test_a_command_seeds_the_engine_and_both_samplers() -> None:
    config = command_engine_config(Settings(), EngineOptions(seed=7, max_tokens=100))
    assert (config.seed, config.generation.seed, config.analysis.seed) == (7, 7, 7)
    assert config.generation.max_tokens == 100
    assert config.analysis.max_tokens == EngineConfig().analysis.max_tokens


def test_a_command_checks_the_preset_first_then_the_values_in_use() -> None:
    with pytest.raises(EngineError, match="Unknown preset 'x'"):
        command_engine_config(Settings(), EngineOptions(preset="x", k=0))
    with pytest.raises(EngineError, match="--max-description-chars must be at least 1"):
        command_engine_config(Settings(), EngineOptions(k=0, max_description_chars=0))
    with pytest.raises(EngineError, match=r"--k must be at least 1 \(got 0\)"):
        command_engine_config(Settings(k=0), EngineOptions())  # a broken saved setting too


def test_an_evaluation_checks_the_given_values_first_then_the_preset() -> None:
    with pytest.raises(EngineError, match="--k must be at least 1"):
        evaluation_engine_config(Settings(), EngineOptions(preset="x", k=0))
    with pytest.raises(EngineError, match="Unknown preset 'x'"):
        evaluation_engine_config(Settings(), EngineOptions(preset="x"))
    assert evaluation_engine_config(Settings(k=0), EngineOptions()).k == 0


def test_eval_config_parses_methods_and_seeds() -> None:
    config = eval_config(
        Settings(k=6), EvalRequest(methods="dpl, rag,dpl", seeds=(3, 1, 3), users=5, split="val")
    )
    assert config.methods == ("dpl", "rag") and config.seeds == (3, 1)
    assert (config.users, config.split, config.engine.k) == (5, "val", 6)
    assert eval_config(Settings(), EvalRequest()).seeds == (42,)
    with pytest.raises(EngineError, match="Unknown method 'x' in --methods"):
        eval_config(Settings(), EvalRequest(methods="dpl,x"))


def test_seeds_out_of_range_are_refused_everywhere_a_seed_is_read() -> None:
    assert command_engine_config(Settings(), EngineOptions(seed=MAX_SEED)).seed == MAX_SEED
    assert eval_config(Settings(), EvalRequest(seeds=(0,))).seeds == (0,)
    for bad in (-1, MAX_SEED + 1):
        message = f"--seed {bad} is out of range"
        with pytest.raises(EngineError, match=message):
            command_engine_config(Settings(), EngineOptions(seed=bad))
        with pytest.raises(EngineError, match=message):
            evaluation_engine_config(Settings(), EngineOptions(seed=bad))
        with pytest.raises(EngineError, match=message):
            eval_config(Settings(), EvalRequest(seeds=(42, bad)))


def test_thresholds_fill_in_the_papers() -> None:
    assert not SplitThresholds().given and SplitThresholds().params() == PAPER_DEFAULTS
    given = SplitThresholds(min_user_reviews=5)
    assert given.given
    assert given.params() == replace(PAPER_DEFAULTS, min_user_reviews=5)


def test_prepare_hands_its_options_to_the_evaluation_by_name() -> None:
    options = EngineOptions(k=3, preset="paper", max_tokens=64, max_review_chars=900)
    request = PrepareRequest(
        split="val", users=4, seeds=(2, 9), options=options, model="m", adapter="a"
    )
    evaluating = request.evaluation()
    assert evaluating.options == options and evaluating.methods == "dpl"
    assert (evaluating.split, evaluating.users, evaluating.seeds) == ("val", 4, (2, 9))
    config = eval_config(Settings(), evaluating)
    assert (config.engine.preset, config.engine.k, config.engine.max_review_chars) == (
        "paper",
        3,
        900,
    )
    # Without a split: the options of `dpl generate` under the first seed.
    defaults = request.default_options()
    assert (defaults.seed, defaults.k, defaults.preset) == (2, 3, "paper")
    assert defaults.max_tokens is None and defaults.max_review_chars is None
    assert PrepareRequest().default_options().seed == 42


def test_prepare_request_checks() -> None:
    with pytest.raises(EngineError, match="--concurrency must be at least 1"):
        PrepareRequest(user_ids=("u",), concurrency=0).check()
    with pytest.raises(EngineError, match="--split must be 'val' or 'test'"):
        PrepareRequest(user_ids=("u",), split="train").check()
    with pytest.raises(EngineError, match="Name the users to prepare"):
        PrepareRequest(split="val").check()
    PrepareRequest(split="val", users=3).check()


def test_prepare_refuses_the_options_its_kind_of_targets_would_ignore() -> None:
    # Default targets use the app's settings under one seed: split-only options are refused,
    # named in one line with the remedy, instead of being dropped without a word.
    with pytest.raises(EngineError, match=r"^--max-tokens only applies with --split: drop it"):
        PrepareRequest(user_ids=("u",), options=EngineOptions(max_tokens=64)).check()
    with pytest.raises(
        EngineError,
        match=r"^--users, --analysis-max-tokens, --min-chars, more than one --seed only apply "
        r"with --split: drop them, or add --split val/test",
    ):
        PrepareRequest(
            user_ids=("u",),
            users=3,
            seeds=(1, 2),
            options=EngineOptions(analysis_max_tokens=64),
            thresholds=SplitThresholds(min_chars=10),
        ).check()
    with pytest.raises(EngineError, match=r"^--rest only applies without --split: drop it, or"):
        PrepareRequest(split="val", users=3, rest=True).check()
    # What each kind does take passes.
    PrepareRequest(user_ids=("u",), seeds=(7,), rest=True, options=EngineOptions(k=3)).check()
    PrepareRequest(
        split="test",
        users=2,
        seeds=(1, 2),
        options=EngineOptions(max_tokens=64, max_review_chars=900),
        thresholds=SplitThresholds(min_chars=10),
    ).check()


def test_no_command_module_imports_another() -> None:
    commands = {p.stem for p in COMMANDS.glob("*_cmds.py")}
    for path in COMMANDS.glob("*_cmds.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert (node.module or "").split(".")[0] not in commands, (path.name, node.module)
