"""``dpl models`` through typer's CliRunner, with settings in a temporary DPL_HOME."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dpl_tui.cli import app
from models.registry import default_gguf_path
from user_store.config import Settings

runner = CliRunner()


def test_lists_the_bundled_default() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["default"]
    row = rows[0]
    assert row["default"] and row["in_use"] and row["error"] == ""
    assert row["path"] == str(default_gguf_path())
    assert row["size_bytes"] == default_gguf_path().stat().st_size
    assert row["quantization"] == "Q4_1" and row["context_length"] == 8192
    assert row["gpu_layers_total"] == 31
    import llama_cpp

    assert row["gpu_built"] == bool(llama_cpp.llama_supports_gpu_offload())
    assert row["gpu_offload_active"] == (row["gpu_layers"] > 0)


def test_add_list_remove_round_trip(dpl_home: Path) -> None:
    result = runner.invoke(app, ["models", "add", "smol", str(default_gguf_path())])
    assert result.exit_code == 0, result.output
    assert "Registered 'smol'" in result.output
    assert Settings.load().models == {"smol": str(default_gguf_path().resolve())}

    table = runner.invoke(app, ["models"], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "smol" in table.output and "Q4_1" in table.output and "8,192" in table.output

    rows = json.loads(runner.invoke(app, ["models", "list", "--json"]).output)
    assert [r["name"] for r in rows] == ["default", "smol"]

    removed = runner.invoke(app, ["models", "remove", "smol"])
    assert removed.exit_code == 0 and "Removed 'smol'" in removed.output
    assert Settings.load().models == {}


def test_the_chosen_model_is_marked(monkeypatch) -> None:
    runner.invoke(app, ["models", "add", "smol", str(default_gguf_path())])
    monkeypatch.setenv("DPL_MODEL", "smol")
    rows = json.loads(runner.invoke(app, ["models", "--json"]).output)
    assert [r["name"] for r in rows if r["in_use"]] == ["smol"]


def test_add_rejects_bad_files_without_a_traceback(tmp_path: Path) -> None:
    text = tmp_path / "weights.gguf"
    text.write_text("not a model")
    cut = tmp_path / "cut.gguf"
    with default_gguf_path().open("rb") as src:
        cut.write_bytes(src.read(1_000_000))
    cases = {
        str(tmp_path / "missing.gguf"): "does not exist",
        str(text): "not a GGUF model",
        str(cut): "truncated",
    }
    for path, expected in cases.items():
        result = runner.invoke(app, ["models", "add", "x", path], terminal_width=300)
        assert result.exit_code == 1, result.output
        flat = "".join(result.output.split())  # the error console wraps long lines
        assert "".join(expected.split()) in flat and Path(path).name in flat
        assert "Traceback" not in result.output
    assert Settings.load().models == {}


def test_a_registered_file_that_disappears_is_flagged(tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.symlink_to(default_gguf_path())
    assert runner.invoke(app, ["models", "add", "gone", str(copy)]).exit_code == 0
    settings = Settings.load()
    settings.models["gone"] = str(copy)
    settings.save()
    copy.unlink()
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    gone = [r for r in json.loads(result.output) if r["name"] == "gone"][0]
    assert "does not exist" in gone["error"]


def test_bad_names_and_unknown_removals() -> None:
    bad = runner.invoke(app, ["models", "add", "a/b", str(default_gguf_path())])
    assert bad.exit_code == 1 and "cannotbeused" in "".join(bad.output.split())
    unknown = runner.invoke(app, ["models", "remove", "nope"])
    assert unknown.exit_code == 1
    assert "Noregisteredmodelnamed'nope'" in "".join(unknown.output.split())


def test_every_models_command_has_help() -> None:
    for args in (["models"], ["models", "list"], ["models", "add"], ["models", "remove"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output and len(result.output.strip()) > 100
