"""``dpl models`` through typer's CliRunner, with settings in a temporary DPL_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpl_tui.cli import app
from models.gpu import CPU_SETTINGS, GPU_SETTINGS, GpuDevice
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
    assert row["n_ctx"] == 8192
    assert row["gpu_layers_total"] == 31
    import llama_cpp

    assert row["gpu_built"] == bool(llama_cpp.llama_supports_gpu_offload())
    assert row["gpu_offload_active"] == (row["gpu_layers"] > 0)
    settings = GPU_SETTINGS if row["gpu_offload_active"] else CPU_SETTINGS
    assert (row["n_batch"], row["n_ubatch"]) == (settings.n_batch, settings.n_ubatch)
    assert row["flash_attn"] == settings.flash_attn
    assert row["reread_prompt"] == settings.reread_prompt
    assert row["load_settings"] == settings.summary()


def test_the_table_names_the_settings_beside_the_offload() -> None:
    rows = json.loads(runner.invoke(app, ["models", "--json"]).output)
    table = runner.invoke(app, ["models"], env={"COLUMNS": "300"})  # no cell wraps
    assert table.exit_code == 0, table.output
    assert rows[0]["load_settings"] in table.output


def test_the_context_column_follows_dpl_n_ctx(monkeypatch: pytest.MonkeyPatch) -> None:
    """The context a load would allocate, as the load computes it, beside the trained one."""
    monkeypatch.setenv("DPL_N_CTX", "4096")
    row = json.loads(runner.invoke(app, ["models", "--json"]).output)[0]
    assert (row["n_ctx"], row["context_length"]) == (4096, 8192)
    table = runner.invoke(app, ["models"], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "4,096 (trained on 8,192)" in table.output

    monkeypatch.setenv("DPL_N_CTX", "lots")
    bad = runner.invoke(app, ["models"])
    assert bad.exit_code == 1
    assert "DPL_N_CTX" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1, bad.output


def test_a_planned_gpu_offload_shows_the_gpu_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a GPU machine prints, without one: the offload plan is faked, nothing is loaded."""
    import models.gpu as gpu

    monkeypatch.setattr(gpu, "supports_gpu_offload", lambda: True)
    monkeypatch.setattr(gpu, "nvidia_devices", lambda: (GpuDevice(0, "NVIDIA H200", 4, 143_771),))
    row = json.loads(runner.invoke(app, ["models", "--json"]).output)[0]
    assert row["gpu_offload_active"] and row["gpu_layers"] == row["gpu_layers_total"]
    assert (row["n_batch"], row["flash_attn"], row["reread_prompt"]) == (512, True, True)
    table = runner.invoke(app, ["models"], env={"COLUMNS": "300"})  # no cell wraps
    assert "on: 31/31 layers, NVIDIA H200 (VRAM 4/143,771 MiB)" in table.output
    assert "512-token prompt batches, flash attention on, prompt re-read per call" in table.output


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


def test_a_registered_adapter_whose_file_is_gone_is_named_and_can_be_removed(
    tmp_path: Path,
) -> None:
    """Before, adapters could not be removed at all, and a vanished one read as a missing
    model with a model's remedy."""
    from dpl_tui.loading import resolve_adapter
    from models.adapters import AdapterError

    gone = tmp_path / "gone.gguf"
    settings = Settings(adapters={"old": str(gone)}, adapter="old", models={"old": str(gone)})
    settings.save()
    with pytest.raises(AdapterError) as err:
        resolve_adapter(Settings.load(), None)
    assert str(err.value) == (
        f"Adapter 'old' is registered at {str(gone)!r}, but no file is there. Train it again "
        "with `dpl tune`, or forget it: dpl models remove old."
    )
    removed = runner.invoke(app, ["models", "remove", "old"])
    assert removed.exit_code == 0, removed.output
    assert "Removed 'old' (model and adapter)" in removed.output
    assert "It was the default adapter; none is applied now." in " ".join(removed.output.split())
    after = Settings.load()
    assert (after.adapters, after.models, after.adapter) == ({}, {}, None)
    assert resolve_adapter(after, None) is None


def test_a_missing_model_says_whether_dpl_model_or_the_saved_choice_named_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A path nobody typed in this command is traced to where it came from."""
    from dpl_tui.loading import load_generator, local_gguf
    from models import ModelNotFoundError

    gone = str(tmp_path / "gone.gguf")
    with pytest.raises(ModelNotFoundError) as typed:
        load_generator(gone, Settings())
    assert "$DPL_MODEL" not in str(typed.value) and "saved" not in str(typed.value)

    with pytest.raises(ModelNotFoundError, match="It is the saved model choice"):
        load_generator(None, Settings(model=gone))
    monkeypatch.setenv("DPL_MODEL", gone)
    for attempt in (
        lambda: load_generator(None, Settings(model="other")),
        lambda: local_gguf(Settings(), None, "training needs a file"),
    ):
        with pytest.raises(ModelNotFoundError) as err:
            attempt()
        assert gone in str(err.value) and str(err.value).endswith(
            "$DPL_MODEL names it: unset it, or point it at a GGUF file or registered name."
        )


def test_an_unknown_adapter_says_whether_dpl_adapter_or_the_saved_choice_named_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dpl_tui.loading import resolve_adapter
    from models.adapters import AdapterError

    with pytest.raises(AdapterError) as typed:
        resolve_adapter(Settings(), "nope")
    assert str(typed.value).endswith("or pass the path of an adapter .gguf.")
    with pytest.raises(AdapterError, match="It is the saved adapter choice"):
        resolve_adapter(Settings(adapter="nope"), None)
    monkeypatch.setenv("DPL_ADAPTER", "nope")
    with pytest.raises(AdapterError, match=r"\$DPL_ADAPTER names it: unset it"):
        resolve_adapter(Settings(), None)
