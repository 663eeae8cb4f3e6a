"""The settings file: what loads, and how a value of the wrong kind is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from user_store import StoreError
from user_store.config import Settings


def test_saved_settings_load_back(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    saved = Settings(
        model="big",
        models={"big": "/m/big.gguf"},
        servers={"s": {"url": "http://127.0.0.1:8080/v1", "model": "x", "concurrency": 4}},
        k=5,
        max_description_chars=None,
        prepare_ahead=False,
    )
    saved.save(path)
    assert Settings.load(path) == saved
    path.write_text(json.dumps({"k": 3, "someday": "a key a later version writes"}))
    assert Settings.load(path) == Settings(k=3)  # unknown keys are left alone


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"k": "8"}, "'k' is \"8\"; it must be a whole number."),
        ({"k": True}, "'k' is true; it must be a whole number."),
        ({"n": 0}, "'n' is 0; it must be at least 1."),
        ({"max_description_chars": -5}, "it must be at least 1."),
        ({"model": 3}, "'model' is 3; it must be a text or null."),
        ({"prepare_ahead": 1}, "it must be true or false."),
        (
            {"models": ["a.gguf"]},
            "'models' is [\"a.gguf\"]; it must be an object of names to texts.",
        ),
        ({"adapters": {"a": 7}}, "it must be an object of names to texts."),
        ({"servers": {"s": "http://x"}}, "it must be an object of names to objects."),
        ({"method": "zzz"}, "'method' is \"zzz\"; it must be one of none, rag, profile, dpl."),
        ({"preset": "Paper"}, "it must be one of dpl, paper."),
    ],
)
def test_a_value_of_the_wrong_kind_names_the_file_and_key(
    tmp_path: Path, value: dict, expected: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(value))
    with pytest.raises(StoreError) as caught:
        Settings.load(path)
    message = str(caught.value)
    assert message.startswith(f"Settings file {str(path)!r}: ")
    assert expected in message and message.endswith("Fix or delete it.")
    assert path.read_text() == json.dumps(value)  # reported, never rewritten


def test_commands_report_a_bad_setting_in_one_line(dpl_home: Path) -> None:
    """Before, a list where the models belong reached `dpl models` as an AttributeError."""
    from dpl_tui.cli import app

    dpl_home.mkdir(parents=True, exist_ok=True)
    (dpl_home / "config.json").write_text('{"models": 5}')
    for args in (["models"], ["users"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "'models' is 5" in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_named_choices_are_the_engines() -> None:
    from dpl_engine.method.presets import PRESETS
    from dpl_engine.types import METHODS
    from user_store.config import CHOICES

    assert CHOICES == {"method": METHODS, "preset": PRESETS}
