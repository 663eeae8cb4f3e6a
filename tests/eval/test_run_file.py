"""An evaluation run written to a file and read into another store of the same reviews,
where the same evaluation resumes it (scripted models, real dev data)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_engine import EngineConfig, EngineError
from dpl_engine.evaluation import report as rp
from dpl_engine.evaluation import runner as ev
from dpl_engine.evaluation import split as sp
from dpl_engine.evaluation.run_file import export_run, import_run
from dpl_tui.cli import app
from tests.dev_split import DEV_PARAMS
from tests.engine.fakes import FakeEmbedder, FakeGenerator
from user_store import UserStore
from user_store.eval_store import EvalStore

CONFIG = dict(methods=("none", "rag", "dpl"), seeds=(1, 2), engine=EngineConfig(m=2))


def _evaluate(store: UserStore, users: int, generator: FakeGenerator) -> ev.EvalReport:
    split = sp.prepare(store, DEV_PARAMS)
    cfg = ev.EvalConfig(users=users, **CONFIG)  # type: ignore[arg-type]
    return ev.Evaluation(store, split, generator, FakeEmbedder(), cfg).execute()


@pytest.fixture
def stores(mi5_db: Path, tmp_path: Path):
    """A store holding a finished two-user run, and a second store of the same reviews."""
    here = UserStore(copy_db(mi5_db, tmp_path / "here.db"))
    there = UserStore(copy_db(mi5_db, tmp_path / "there.db"))
    _evaluate(there, 2, FakeGenerator())
    yield here, there
    here.close()
    there.close()


def test_an_exported_run_resumes_in_another_store(stores, tmp_path: Path):
    here, there = stores
    original = rp.stored_report(there, 1)
    path = tmp_path / "run.jsonl.gz"
    assert export_run(there, 1, path) == 2 * 2 * 3

    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
    assert json.loads(lines[0])["format"] == "dpl-eval-run"
    assert all("reference" not in json.loads(line) for line in lines[1:])

    imported = import_run(here, path)
    assert (imported.added, imported.already) == (12, 0)
    again = rp.stored_report(here, imported.run.id)
    assert again.rows == original.rows and again.users == original.users

    # The same evaluation on three users generates only the third user's cells.
    generator = FakeGenerator()
    grown = _evaluate(here, 3, generator)
    assert grown.run_id == imported.run.id
    assert generator.calls["generate"] == 2 * 3
    assert len(grown.users) == 3

    # Reading the file again adds nothing.
    assert (import_run(here, path).added, import_run(here, path).already) == (0, 12)


def test_a_file_for_other_data_is_refused_and_writes_no_run(stores, tmp_path: Path):
    here, there = stores
    path = tmp_path / "run.jsonl"
    export_run(there, 1, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[3])
    record["reference_sha"] = "0" * 64
    lines[3] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(EngineError, match=rf"{path.name}, line 4: the held-out review"):
        import_run(here, path)
    assert EvalStore(here).runs() == []

    header = json.loads(lines[0])
    header["split"]["data_fingerprint"] = "elsewhere"
    path.write_text(json.dumps(header) + "\n", encoding="utf-8")
    with pytest.raises(EngineError, match="made on other data"):
        import_run(here, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("not json\n", "line 1: not valid JSON"),
        ('{"format": "something else"}\n', "line 1: not a dpl evaluation run"),
        ('{"format": "dpl-eval-run", "version": 99}\n', "line 1: run file version 99"),
    ],
)
def test_unreadable_files_name_the_line(stores, tmp_path: Path, text: str, message: str):
    here, _ = stores
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EngineError, match=message):
        import_run(here, path)


def test_cli_exports_and_imports(stores, tmp_path: Path):
    here, there = stores
    path = tmp_path / "new" / "folder" / "run.jsonl.gz"  # made as --out makes its folder
    runner = CliRunner()
    there.close()  # the CLI opens the file itself
    out = runner.invoke(
        app, ["eval", "--db", str(tmp_path / "there.db"), "--report", "1", "--export", str(path)]
    )
    assert out.exit_code == 0, out.output
    assert "12 results written" in out.output
    here.close()
    out = runner.invoke(app, ["eval", "--db", str(tmp_path / "here.db"), "--import", str(path)])
    assert out.exit_code == 0, out.output
    assert "12 results added" in out.output and "Run 1 (done): 2 users" in out.output

    out = runner.invoke(app, ["eval", "--db", str(tmp_path / "here.db"), "--export", str(path)])
    assert out.exit_code != 0 and "--export needs --report N" in out.output
    out = runner.invoke(
        app, ["eval", "--db", str(tmp_path / "here.db"), "--import", str(tmp_path / "none.jsonl")]
    )
    assert out.exit_code != 0 and "Cannot read the run file" in out.output
    assert "Traceback" not in out.output

    blocked = tmp_path / "a-file"  # a file where the folder would go: a traceback before
    blocked.write_text("")
    out = runner.invoke(
        app,
        ["eval", "--db", str(tmp_path / "here.db"), "--report", "1"]
        + ["--export", str(blocked / "run.jsonl")],
    )
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert f"Cannot write the run file {str(blocked / 'run.jsonl')!r}" in out.stderr
    assert "Pass --export a path in a folder you can write to." in " ".join(out.stderr.split())
