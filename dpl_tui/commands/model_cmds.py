"""``dpl models``: list the bundled and registered GGUF models, register and unregister them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ..common import JsonOption, console, fail, user_errors

models_app = typer.Typer(
    name="models",
    help="List the GGUF models dpl can use, and register your own by name.",
    no_args_is_help=False,
    invoke_without_command=True,
)

DEFAULT_NAME = "default"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _entries():  # -> list[ModelEntry]
    from models.errors import ModelError
    from models.registry import default_gguf_path, describe
    from user_store.config import Settings

    settings = Settings.load()
    entries = []
    try:
        entries.append(describe(DEFAULT_NAME, default_gguf_path(), default=True))
    except ModelError as err:
        from models.registry import ModelEntry

        entries.append(ModelEntry(name=DEFAULT_NAME, path="", default=True, error=str(err)))
    for name, path in sorted(settings.models.items()):
        entries.append(describe(name, path))
    choice = os.environ.get("DPL_MODEL") or settings.model
    return entries, settings, choice


def _in_use(entry, choice: str | None, names: set[str]) -> bool:  # entry: ModelEntry
    """Whether ``entry`` is what a command without --model would load."""
    if choice is None:
        return entry.default
    if choice in names:
        return entry.name == choice and not entry.default
    return bool(entry.path) and Path(choice).expanduser().resolve() == Path(entry.path).resolve()


def _row(entry, in_use: bool) -> dict:  # entry: ModelEntry
    from models.gpu import planned_state

    row: dict = {"name": entry.name, "path": entry.path, "default": entry.default,
                 "in_use": bool(in_use), "error": entry.error}
    if entry.info is not None:
        state = planned_state(entry.info.block_count)
        row.update(
            size_bytes=entry.info.size_bytes,
            quantization=entry.info.quantization,
            context_length=entry.info.context_length,
            architecture=entry.info.architecture,
            gpu_built=state.built_with_gpu,
            gpu_offload_active=state.active,
            gpu_layers=state.layers_offloaded,
            gpu_layers_total=state.layers_total,
            gpu_device=state.device_name,
            vram=state.vram,
        )
    return row


def list_models(as_json: JsonOption = False) -> None:
    """List the bundled default and the registered models."""
    with user_errors():
        entries, settings, choice = _entries()
        names = set(settings.models)
        rows = [_row(e, _in_use(e, choice, names)) for e in entries]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="GGUF models", title_justify="left")
    for col in ("", "name", "path", "size", "quant", "context", "GPU offload"):
        table.add_column(col, overflow="fold")
    for row in rows:
        mark = "*" if row["in_use"] else ""
        name = row["name"] + (" (bundled)" if row["default"] else "")
        if row["error"]:
            table.add_row(mark, Text(name), Text(row["path"]), "", "", "",
                          Text(row["error"], style="red"))
            continue
        if row["gpu_offload_active"]:
            gpu = f"on: {row['gpu_layers']}/{row['gpu_layers_total']} layers, {row['gpu_device']}"
            if row["vram"]:
                gpu += f" (VRAM {row['vram']})"
        elif row["gpu_built"]:
            gpu = "off (0 layers)"
        else:
            gpu = "off (CPU-only llama.cpp build)"
        table.add_row(mark, Text(name), Text(row["path"]), _size(row["size_bytes"]),
                      row["quantization"], f"{row['context_length']:,}", gpu)
    console.print(table)
    console.print("* = used when no --model is given. Register a model: dpl models add NAME PATH",
                  highlight=False)


@models_app.callback()
def _models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the bundled default and registered models (name, path, size, quantization,
    context length, GPU offload)."""
    if ctx.invoked_subcommand is None:
        list_models(as_json)


@models_app.command("list")
def list_cmd(as_json: JsonOption = False) -> None:
    """List the bundled default and registered models."""
    list_models(as_json)


@models_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name to use with --model NAME.")],
    path: Annotated[Path, typer.Argument(help="The GGUF file.")],
) -> None:
    """Register a GGUF model under a name, after checking the file is a complete GGUF."""
    from models.registry import inspect_gguf
    from user_store.config import Settings

    name = name.strip()
    if not name or "/" in name or "\\" in name or name == DEFAULT_NAME:
        raise fail(f"Model name {name!r} cannot be used: pick a short name without slashes "
                   f"(and not {DEFAULT_NAME!r}).")
    with user_errors():
        info = inspect_gguf(path)
        settings = Settings.load()
        replaced = settings.models.get(name)
        settings.models[name] = str(Path(info.path).resolve())
        saved = settings.save()
    verb = "Updated" if replaced else "Registered"
    console.print(
        f"{verb} {name!r}: {info.name} ({info.architecture}, {info.quantization}, "
        f"context {info.context_length:,}, {_size(info.size_bytes)}) in {str(saved)!r}. "
        f"Use it with --model {name}.",
        highlight=False,
    )


@models_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="A registered model name.")]) -> None:
    """Forget a registered model (the file itself is left alone)."""
    from user_store.config import Settings

    with user_errors():
        settings = Settings.load()
        if name not in settings.models:
            known = ", ".join(sorted(settings.models)) or "none"
            raise fail(f"No registered model named {name!r} (registered: {known}).")
        del settings.models[name]
        note = ""
        if settings.model == name:
            settings.model = None
            note = " It was the chosen model; the bundled default is used again."
        settings.save()
    console.print(f"Removed {name!r}.{note}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)
