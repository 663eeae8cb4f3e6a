"""``dpl models add NAME --url ...`` and the server rows of ``dpl models``, against the fake
server on 127.0.0.1; settings live in a temporary DPL_HOME."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from benchmarks.common import free_port
from dpl_tui.cli import app
from user_store import locations
from user_store.config import Settings

from .fake_openai import FakeOpenAI

runner = CliRunner()


def test_add_a_server_then_list_it_as_reachable_with_its_model() -> None:
    with FakeOpenAI(models=("qwen2.5-7b", "gte-qwen2")).running() as fake:
        added = runner.invoke(app, ["models", "add", "qwen", "--url", fake.url,
                                    "--model", "qwen2.5-7b", "--concurrency", "4"])
        assert added.exit_code == 0, added.output
        assert "Registered server 'qwen'" in added.output and "reachable" in added.output
        entry = Settings.load().servers["qwen"]
        assert entry["url"] == fake.url and entry["model"] == "qwen2.5-7b"
        assert entry["concurrency"] == 4

        rows = json.loads(runner.invoke(app, ["models", "--json"]).output)
        server = next(r for r in rows if r["name"] == "qwen")
        assert server["server"] and server["reachable"]
        assert server["served"] == ["qwen2.5-7b", "gte-qwen2"]

        table = runner.invoke(app, ["models"], terminal_width=200)
        assert table.exit_code == 0, table.output
        assert "LLM servers" in table.output and "reachable," in table.output


def test_the_api_key_stays_in_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("DPL_TEST_KEY", "sekrit-value")
    with FakeOpenAI(api_key="sekrit-value").running() as fake:
        added = runner.invoke(app, ["models", "add", "secure", "--url", fake.url,
                                    "--model", "fake-model", "--api-key-env", "DPL_TEST_KEY"])
        assert added.exit_code == 0, added.output
        assert "reachable" in added.output and "not reachable" not in added.output
    text = locations.config_path().read_text(encoding="utf-8")
    assert "DPL_TEST_KEY" in text and "sekrit-value" not in text


def test_a_key_given_instead_of_a_variable_name_is_refused() -> None:
    result = runner.invoke(app, ["models", "add", "x", "--url", "http://127.0.0.1:1/v1",
                                 "--model", "m", "--api-key-env", "sk-abc.def"])
    assert result.exit_code == 1 and "name of an environment variable" in result.output
    assert Settings.load().servers == {}


def test_an_unreachable_server_is_listed_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    added = runner.invoke(app, ["models", "add", "gone", "--url", url, "--model", "m"])
    assert added.exit_code == 0, added.output
    assert "not reachable now: Could not reach" in " ".join(added.output.split())
    rows = json.loads(runner.invoke(app, ["models", "--json"]).output)
    gone = next(r for r in rows if r["name"] == "gone")
    assert not gone["reachable"] and url in gone["status"]


def test_bad_server_values_are_one_line_errors() -> None:
    no_model = runner.invoke(app, ["models", "add", "x", "--url", "http://127.0.0.1:1/v1"])
    assert no_model.exit_code == 1 and "--model" in no_model.output
    bad_url = runner.invoke(app, ["models", "add", "x", "--url", "localhost:8080", "--model", "m"])
    assert bad_url.exit_code == 1 and "is not an http(s) URL" in bad_url.output
    zero = runner.invoke(app, ["models", "add", "x", "--url", "http://h:1/v1", "--model", "m",
                               "--concurrency", "0"])
    assert zero.exit_code == 1 and "--concurrency must be at least 1" in zero.output
    for result in (no_model, bad_url, zero):
        assert "Traceback" not in result.output
    assert Settings.load().servers == {}


def test_remove_forgets_a_server() -> None:
    runner.invoke(app, ["models", "add", "s", "--url", "http://127.0.0.1:1/v1", "--model", "m"])
    removed = runner.invoke(app, ["models", "remove", "s"])
    assert removed.exit_code == 0 and "Removed 's'" in removed.output
    assert Settings.load().servers == {}


def test_a_hand_broken_server_entry_is_listed_then_removable() -> None:
    """Before, a saved entry without a url, or with a text for its concurrency, made every
    `dpl models` a TypeError; now the listing names the entry and the fix, and a command that
    would use it says the same in one line."""
    Settings(
        model="half",
        servers={
            "half": {"model": "m"},
            "wordy": {"url": "http://127.0.0.1:1/v1", "model": "m", "concurrency": "many"},
        },
    ).save()
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "--json"]).output)}
    assert not rows["half"]["reachable"] and "no 'url' given" in rows["half"]["status"]
    assert rows["wordy"]["url"] == "http://127.0.0.1:1/v1"
    assert "'concurrency' is \"many\"; it must be a whole number" in rows["wordy"]["status"]
    table = runner.invoke(app, ["models"], env={"COLUMNS": "400"})  # no cell wraps
    assert table.exit_code == 0, table.output
    assert "Server 'half' in the settings: no 'url' given. Register it again" in table.output

    assert runner.invoke(app, ["ingest", "--sample", "--quiet"]).exit_code == 0
    used = runner.invoke(app, ["generate", "ADH0O8UVJOT10", "--method", "rag"])
    assert used.exit_code == 1 and "Traceback" not in used.output
    assert used.stderr.strip() == "error: " + rows["half"]["status"]

    assert runner.invoke(app, ["models", "remove", "half"]).exit_code == 0
    assert runner.invoke(app, ["models", "remove", "wordy"]).exit_code == 0
    assert Settings.load().servers == {} and Settings.load().model is None


def test_every_saved_server_field_is_checked_by_kind() -> None:
    """The kinds `from_dict` checks are written out beside the dataclass: they cover exactly
    its fields, and each field's default is of the kind it checks."""
    from dataclasses import MISSING, fields

    from models.server import _ENTRY_FIELDS, ServerConfig

    saved = {f.name: f for f in fields(ServerConfig) if f.name != "name"}
    assert set(_ENTRY_FIELDS) == set(saved)
    for key, (kinds, _what) in _ENTRY_FIELDS.items():
        if saved[key].default is not MISSING:
            assert isinstance(saved[key].default, kinds), key
    entry = {"url": "http://127.0.0.1:1/v1", "model": "m", "timeout_s": 30, "context_length": 4096}
    assert ServerConfig.from_dict("s", entry).timeout_s == 30
