"""``dpl compare`` gives the measured differences in words first, then the model's
differences labelled as the model's, with the uninformative ones marked (dev data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_tui.cli import app
from tests.engine.fakes import FakeEmbedder, FakeGenerator

runner = CliRunner()
USER = "A34O0KQV4QXWNQ"
ECHO = {
    "writing": "Shorter sentences than the others.",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "Rating: 5 out of 5",
}


@pytest.fixture
def dev_db(mi5_db: Path, tmp_path: Path) -> Path:
    return copy_db(mi5_db, tmp_path / "dev.db")


def test_json_and_table_put_the_measured_account_first(dev_db: Path):
    args = ["compare", USER, "--db", str(dev_db), "--k", "3", "--no-llm"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert list(data)[:2] == ["target", "measured_account"]
    items = data["measured_account"]["items"]
    assert [a["item_id"] for a in items] == [c["item"]["id"] for c in data["comparisons"]]
    assert data["measured_account"]["overall"]["items"] == len(items) == 3
    assert all(a["text"].endswith(".") for a in items)
    out = runner.invoke(app, args).stdout
    assert out.index("Measured differences, all comparison items") < out.index("B003VWJ2K8:")
    assert data["measured_account"]["overall"]["text"][:40] in " ".join(out.split())


def test_the_models_differences_follow_with_echoes_marked(dev_db: Path, monkeypatch):
    import models.embeddings
    import models.llama

    monkeypatch.setattr(
        models.llama, "load_generator", lambda _p=None: FakeGenerator(differences=ECHO)
    )
    monkeypatch.setattr(models.embeddings, "load_embedder", lambda _p=None: FakeEmbedder())
    args = ["compare", USER, "--db", str(dev_db), "--k", "3"]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})  # no cell wraps
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    first = out.index("The model's differences")
    assert out.index("Measured differences per comparison item") < first
    assert "[uninformative: echoes the dimension's name or description]" in out
    assert "[uninformative: echoes the rating]" in out
    assert "dpl models add" in out  # the way to a better model
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    verdicts = next(iter(data["informative"].values()))
    assert [v["informative"] for v in verdicts] == [True, False, False]


def test_the_measured_account_is_printed_before_the_model_is_loaded(dev_db: Path, monkeypatch):
    import sys

    import models.embeddings
    import models.llama

    printed_before_load: list[str] = []

    def load(_path=None):
        sys.stdout.flush()
        printed_before_load.append(sys.stdout.buffer.getvalue().decode())
        return FakeGenerator(differences=ECHO)

    monkeypatch.setattr(models.llama, "load_generator", load)
    monkeypatch.setattr(models.embeddings, "load_embedder", lambda _p=None: FakeEmbedder())
    args = ["compare", USER, "--db", str(dev_db), "--k", "3"]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert len(printed_before_load) == 1, "the model is loaded once, for the differences"
    before = " ".join(printed_before_load[0].split())
    data = json.loads(runner.invoke(app, [*args, "--no-llm", "--json"]).stdout)
    assert data["measured_account"]["overall"]["text"] in before
    for account in data["measured_account"]["items"]:
        assert account["item_id"] in before and account["text"] in before
    assert "The model's differences" not in before
    assert "The model's differences" in result.stdout
