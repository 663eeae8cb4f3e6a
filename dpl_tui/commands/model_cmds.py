"""``dpl models``: list the bundled and registered GGUF models and LLM servers, register and
unregister them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ..common import console, fail, user_errors
from .options import JsonOption

models_app = typer.Typer(
    name="models",
    help="List the GGUF models and LLM servers dpl can use, and register your own by name.",
    no_args_is_help=False,
    invoke_without_command=True,
)

DEFAULT_NAME = "default"


def _checked_name(name: str) -> str:
    """A name to register a model under, or a one-line error."""
    name = name.strip()
    if not name or "/" in name or "\\" in name or name == DEFAULT_NAME:
        raise fail(
            f"Model name {name!r} cannot be used: pick a short name without slashes "
            f"(and not {DEFAULT_NAME!r})."
        )
    return name


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
    from models.gpu import planned_settings, planned_state
    from models.llama import default_n_ctx

    row: dict = {
        "name": entry.name,
        "path": entry.path,
        "default": entry.default,
        "in_use": bool(in_use),
        "error": entry.error,
    }
    if entry.info is not None:
        state = planned_state(entry.info.block_count)
        settings = planned_settings(state)
        row.update(
            size_bytes=entry.info.size_bytes,
            quantization=entry.info.quantization,
            context_length=entry.info.context_length,
            n_ctx=default_n_ctx(entry.info.context_length),
            architecture=entry.info.architecture,
            gpu_built=state.built_with_gpu,
            gpu_offload_active=state.active,
            gpu_layers=state.layers_offloaded,
            gpu_layers_total=state.layers_total,
            gpu_device=state.device_name,
            vram=state.vram,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_ubatch,
            flash_attn=settings.flash_attn,
            reread_prompt=settings.reread_prompt,
            load_settings=settings.summary(),
        )
    return row


def _server_rows(settings, choice: str | None) -> list[dict]:
    """One row per registered server, with whether it answers and what it serves; an entry
    that cannot be read is listed with what is wrong with it, so it can be removed."""
    from models.errors import ServerError
    from models.server import ServerConfig, reachability

    rows = []
    for name, entry in sorted(settings.servers.items()):
        try:
            config = ServerConfig.from_dict(name, entry)
        except ServerError as err:
            rows.append(_broken_server_row(name, entry, str(err), in_use=choice == name))
            continue
        ok, note, found = reachability(config)
        rows.append(
            {
                "name": name,
                "server": True,
                "url": config.url,
                "model": config.model,
                "in_use": choice == name,
                "default": False,
                "reachable": ok,
                "status": note,
                "kind": found.kind if found else "",
                "served": list(found.served) if found else [],
                "context_length": config.context_length or (found.context_length if found else 0),
                "slots": found.slots if found else None,
                "concurrency": config.concurrency,
                "api_key_env": config.api_key_env,
                "embedding_model": config.embedding_model,
            }
        )
    return rows


def _broken_server_row(name: str, entry: dict, problem: str, in_use: bool) -> dict:
    def text(key: str) -> str:
        return entry[key] if isinstance(entry.get(key), str) else ""

    return {
        "name": name,
        "server": True,
        "url": text("url"),
        "model": text("model"),
        "in_use": in_use,
        "default": False,
        "reachable": False,
        "status": problem,
        "kind": "",
        "served": [],
        "context_length": 0,
        "slots": None,
        "concurrency": None,
        "api_key_env": None,
        "embedding_model": None,
    }


def list_models(as_json: JsonOption = False) -> None:
    """List the bundled default and the registered models and servers."""
    with user_errors():
        entries, settings, choice = _entries()
        names = set(settings.models)
        rows = [_row(e, _in_use(e, choice, names)) for e in entries]
        servers = _server_rows(settings, choice)
        adapters = _adapter_rows(settings)
    if as_json:
        console.print_json(json.dumps(rows + servers + adapters))
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
            table.add_row(
                mark, Text(name), Text(row["path"]), "", "", "", Text(row["error"], style="red")
            )
            continue
        if row["gpu_offload_active"]:
            gpu = f"on: {row['gpu_layers']}/{row['gpu_layers_total']} layers, {row['gpu_device']}"
            if row["vram"]:
                gpu += f" (VRAM {row['vram']})"
        elif row["gpu_built"]:
            gpu = "off (0 layers)"
        else:
            gpu = "off (CPU-only llama.cpp build)"
        gpu += f"\n{row['load_settings']}"
        table.add_row(
            mark,
            Text(name),
            Text(row["path"]),
            _size(row["size_bytes"]),
            row["quantization"],
            _context(row["n_ctx"], row["context_length"]),
            gpu,
        )
    console.print(table)
    if servers:
        console.print(_server_table(servers))
    if adapters:
        console.print(_adapter_table(adapters))
    console.print(
        "* = used when no --model is given. Register a model: dpl models add NAME PATH, "
        "or a server: dpl models add NAME --url http://HOST:PORT/v1 --model SERVED",
        highlight=False,
    )


def _context(n_ctx: int, trained: int) -> str:
    """The context a load allocates, and the training context when they differ."""
    if not trained:
        return f"{n_ctx:,} (training context not given)"
    return f"{n_ctx:,}" if n_ctx == trained else f"{n_ctx:,} (trained on {trained:,})"


def _adapter_rows(settings) -> list[dict]:
    """One row per adapter registered by `dpl tune`, with what its file records."""
    from dpl_engine.tuning.personal import read_verdicts, users_folder
    from models.adapters import inspect_adapter
    from models.errors import ModelError

    rows = []
    for name, path in sorted(settings.adapters.items()):
        row: dict = {"name": name, "adapter": True, "path": path, "error": ""}
        try:
            info = inspect_adapter(path)
        except ModelError as err:
            rows.append({**row, "error": str(err)})
            continue
        meta = info.meta
        verdicts = read_verdicts(users_folder(path)).values()
        rows.append(
            {
                **row,
                "adapter_id": info.adapter_id,
                "size_bytes": info.size_bytes,
                "base_model_id": info.base_model_id,
                "method": meta.get("method", ""),
                "teacher_id": meta.get("teacher_id", ""),
                "examples": meta.get("examples"),
                "final_loss": meta.get("final_loss"),
                "split": meta.get("split", {}).get("id"),
                "rank": meta.get("options", {}).get("rank"),
                "contrast": meta.get("options", {}).get("contrast") or 0.0,
                "per_user": {"measured": len(verdicts), "kept": sum(v.kept for v in verdicts)},
            }
        )
    return rows


def _adapter_table(adapters: list[dict]):  # -> Table
    from rich.table import Table
    from rich.text import Text

    table = Table(title="LoRA adapters (dpl tune)", title_justify="left")
    for col in ("name", "base", "method", "teacher", "examples", "loss", "per-user kept", "path"):
        table.add_column(col, overflow="fold")
    for row in adapters:
        if row["error"]:
            table.add_row(
                Text(row["name"]), "", "", "", "", "", "", Text(row["error"], style="red")
            )
            continue
        users = row["per_user"]
        per_user = f"{users['kept']} of {users['measured']}" if users["measured"] else ""
        teacher = row["teacher_id"] if row["teacher_id"] != row["base_model_id"] else "(base)"
        table.add_row(
            Text(row["name"]),
            Text(row["base_model_id"]),
            row["method"] + (f", contrast {row['contrast']:g}" if row["contrast"] else ""),
            Text(teacher),
            str(row["examples"]),
            f"{row['final_loss']}",
            per_user,
            Text(row["path"]),
        )
    return table


def _server_table(servers: list[dict]):  # -> Table
    from rich.table import Table
    from rich.text import Text

    table = Table(title="LLM servers", title_justify="left")
    for col in ("", "name", "url", "model", "context", "concurrency", "status"):
        table.add_column(col, overflow="fold")
    for row in servers:
        status = Text(
            ("reachable, " if row["reachable"] else "") + row["status"],
            style="green" if row["reachable"] else "red",
        )
        ctx = f"{row['context_length']:,}" if row["context_length"] else "not reported"
        slots = f" (server slots: {row['slots']})" if row["slots"] else ""
        table.add_row(
            "*" if row["in_use"] else "",
            Text(row["name"]),
            Text(row["url"]),
            Text(row["model"]),
            ctx,
            "" if row["concurrency"] is None else f"{row['concurrency']}{slots}",
            status,
        )
    return table


@models_app.callback()
def _models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the bundled default and registered models (name, path, size, quantization,
    the context a load allocates (DPL_N_CTX, else the training context up to 8,192), GPU
    offload and the llama.cpp settings that go with it), and registered servers with whether
    they answer."""
    if ctx.invoked_subcommand is None:
        list_models(as_json)


@models_app.command("list")
def list_cmd(as_json: JsonOption = False) -> None:
    """List the bundled default and registered models and servers."""
    list_models(as_json)


@models_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name to use with --model NAME.")],
    path: Annotated[
        Path | None, typer.Argument(help="The GGUF file (leave out with --url).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="An OpenAI-compatible server: http://HOST:PORT/v1."),
    ] = None,
    served: Annotated[
        str | None, typer.Option("--model", help="With --url: the model name the server serves.")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="With --url: environment variable holding the API key."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="With --url: calls sent at once (its slots).")
    ] = 1,
    context_length: Annotated[
        int | None,
        typer.Option(
            "--context-length",
            help="With --url: context tokens, if the server does not report them.",
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="With --url: auto, openai, llama.cpp, "
            "llama-cpp-python, vllm or ollama (how JSON schemas are sent).",
        ),
    ] = "auto",
    timeout: Annotated[
        float, typer.Option("--timeout", help="With --url: seconds to wait for the server.")
    ] = 300.0,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="With --url: embed with this served model "
            "(/v1/embeddings) instead of the local one.",
        ),
    ] = None,
) -> None:
    """Register a GGUF model (checked to be a complete GGUF), or an LLM server with --url."""
    from models.registry import inspect_gguf
    from user_store.config import Settings

    name = _checked_name(name)
    if url is not None:
        if path is not None:
            raise fail(f"Give either a GGUF file or --url for {name!r}, not both.")
        _add_server(
            name,
            url,
            served,
            api_key_env,
            concurrency,
            context_length,
            kind,
            timeout,
            embedding_model,
        )
        return
    if path is None:
        raise fail(
            f"Give the GGUF file for {name!r} (dpl models add {name} PATH), or a server "
            f"with --url http://HOST:PORT/v1 --model SERVED_NAME."
        )
    with user_errors():
        info = inspect_gguf(path)
        settings = Settings.load()
        replaced = settings.models.get(name) or settings.servers.pop(name, None)
        settings.models[name] = str(Path(info.path).resolve())
        saved = settings.save()
    verb = "Updated" if replaced else "Registered"
    console.print(
        f"{verb} {name!r}: {info.name} ({info.architecture}, {info.quantization}, "
        f"context {info.context_length:,}, {_size(info.size_bytes)}) in {str(saved)!r}. "
        f"Use it with --model {name}.",
        highlight=False,
    )


def _add_server(
    name, url, served, api_key_env, concurrency, context_length, kind, timeout, embedding_model
) -> None:
    from models.server import ServerConfig, reachability
    from user_store.config import Settings

    if not served:
        raise fail(
            f"Give the served model name with --model (what {url}/models lists), e.g. "
            f"dpl models add {name} --url {url} --model MODEL."
        )
    if api_key_env is not None and (not api_key_env or not api_key_env.replace("_", "").isalnum()):
        raise fail(
            f"--api-key-env takes the name of an environment variable (got "
            f"{api_key_env!r}), not the key itself."
        )
    config = ServerConfig(
        name=name,
        url=url.rstrip("/"),
        model=served,
        api_key_env=api_key_env,
        concurrency=concurrency,
        context_length=context_length or 0,
        kind=kind,
        timeout_s=timeout,
        embedding_model=embedding_model,
    )
    with user_errors():
        config.check()
        settings = Settings.load()
        replaced = settings.servers.get(name) or settings.models.pop(name, None)
        settings.servers[name] = config.to_dict()
        saved = settings.save()
    ok, note, _ = reachability(config)
    verb = "Updated" if replaced else "Registered"
    state = f"reachable, {note}" if ok else f"not reachable now: {note}"
    console.print(
        f"{verb} server {name!r}: {config.model!r} at {config.url}, concurrency "
        f"{config.concurrency} ({state}) in {str(saved)!r}. Use it with --model {name}.",
        highlight=False,
    )


@models_app.command("merge")
def merge(
    adapter: Annotated[str, typer.Argument(help="A registered adapter name or an adapter .gguf.")],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Name to register the merged model under (default: ADAPTER-merged)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="The base GGUF the adapter was trained on (default: the chosen model)."
        ),
    ] = None,
) -> None:
    """Fold an adapter into its base model's weights: a model of its own that writes at the
    base's speed (an adapter applied at run time costs about a fifth of it)."""
    from models.adapters import AdapterError, inspect_adapter, merge_adapter
    from user_store import locations
    from user_store.config import Settings

    from ..loading import local_gguf, resolve_adapter

    with user_errors():
        settings = Settings.load()
        path = resolve_adapter(settings, adapter)
        if path is None:
            raise AdapterError("Name the adapter to merge: dpl models merge NAME.")
        info = inspect_adapter(path)
        name = _checked_name(name or f"{info.meta.get('name') or Path(path).stem}-merged")
        base = local_gguf(
            settings, model, "merging writes a GGUF here. Pass the base GGUF with --model."
        )
        out = merge_adapter(base, path, locations.adapters_dir() / f"{name}.gguf")
        settings.models[name] = str(out.resolve())
        saved = settings.save()
    console.print(
        f"Merged adapter {info.adapter_id!r} into {base.name!r}: model {name!r} "
        f"({_size(out.stat().st_size)}, {str(out)!r}), registered in {str(saved)!r}. Use it "
        f"with --model {name}; users are still read by the base model (or the adapter's "
        "teacher). Per-user adapters apply only with --adapter.",
        highlight=False,
    )


@models_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="A registered model, server or adapter name.")],
) -> None:
    """Forget a registered model, server or adapter (the file itself is left alone)."""
    from user_store.config import Settings

    with user_errors():
        settings = Settings.load()
        registries = {
            "model": settings.models,
            "server": settings.servers,
            "adapter": settings.adapters,
        }
        kinds = [kind for kind, names in registries.items() if name in names]
        if not kinds:
            known = ", ".join(sorted({n for names in registries.values() for n in names}))
            raise fail(f"No registered model named {name!r} (registered: {known or 'none'}).")
        for kind in kinds:
            registries[kind].pop(name)
        notes = []
        if settings.model == name:
            settings.model = None
            notes.append("It was the chosen model; the bundled default is used again.")
        if settings.adapter == name:
            settings.adapter = None
            notes.append("It was the default adapter; none is applied now.")
        settings.save()
    what = " and ".join(kinds)
    console.print(f"Removed {name!r} ({what}).{''.join(' ' + n for n in notes)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)
