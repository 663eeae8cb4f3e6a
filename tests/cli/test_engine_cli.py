"""``dpl compare`` and ``dpl generate`` through typer's CliRunner, on real data and real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_tui.cli import app

runner = CliRunner()
USER = "A34O0KQV4QXWNQ"  # hand-checked in tests/engine/test_dev_data.py


@pytest.fixture
def dev_db(mi5_db: Path, tmp_path: Path) -> Path:
    return copy_db(mi5_db, tmp_path / "dev.db")


@pytest.fixture
def markup_db(tmp_path: Path) -> Path:
    """A tiny database whose reviews look like Rich markup, to prove text is printed literally."""
    from user_store import UserStore
    from user_store.ingest import ingest_files

    rows = []
    for j, user in enumerate(["u1", "u2", "u3", "u4", "u5"]):
        for i, item in enumerate(["B01", "B02", "B03"]):
            rows.append(
                {
                    "user_id": user,
                    "parent_asin": item,
                    "asin": item,
                    "rating": 1.0 + (i + j) % 5,
                    "title": f"[red]Title {user} {item}[/red]",
                    "text": f"Review by {user} of {item}: [bold]works[/bold] fine.",
                    "timestamp": 1_000_000 * (i + 1) + j,
                    "helpful_vote": 0,
                }
            )
    src = tmp_path / "reviews.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    path = tmp_path / "markup.db"
    store = UserStore(path)
    try:
        ingest_files(store, [src])
    finally:
        store.close()
    return path


def test_commands_have_help():
    for name in ("compare", "generate"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        for option in ("--item", "--seed", "--refresh", "--db", "--json"):
            assert option in result.output
    assert "--no-llm" in runner.invoke(app, ["compare", "--help"]).output
    gen_help = runner.invoke(app, ["generate", "--help"]).output
    for option in ("--method", "--rating", "--title", "--model", "--max-tokens", "--json"):
        assert option in gen_help


def test_compare_without_llm_lists_items_users_and_measures(dev_db: Path):
    result = runner.invoke(
        app, ["compare", USER, "--db", str(dev_db), "--k", "3", "--no-llm", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["entry"]["item"]["id"] for r in data["retrieved"]] == [
        "B003VWJ2K8",
        "B0002E2S36",
        "B001RNOHHG",
    ]
    assert len(data["comparisons"]) == 3 and data["differences"] == []
    for cs in data["comparisons"]:
        assert 1 <= len(cs["users"]) <= 4
        assert {"user_id", "cluster", "distance", "similarity", "rating"} <= set(cs["users"][0])
    assert data["measured"][0]["user"]["words"] > 0

    table = runner.invoke(app, ["compare", USER, "--db", str(dev_db), "--k", "3", "--no-llm"])
    assert table.exit_code == 0, table.output
    assert "Retrieved past reviews" in table.stdout and "Measured differences" in table.stdout
    assert "B003VWJ2K8" in table.stdout and "Extracted differences" not in table.stdout


def test_generate_streams_then_prints_the_real_review_literally(markup_db: Path):
    result = runner.invoke(
        app, ["generate", "u1", "--db", str(markup_db), "--method", "rag", "--max-tokens", "6"]
    )
    assert result.exit_code == 0, result.output
    assert "Real review (held out), rated" in result.stdout
    assert "[red]Title u1 B03[/red]" in result.stdout
    assert "Review by u1 of B03: [bold]works[/bold] fine" in result.stdout
    generated = result.stdout.split("Real review (held out)")[0].strip()
    assert generated  # the streamed text came first
    assert "rag:" in result.stderr and "LLM call" in result.stderr


def test_generate_json_carries_the_intermediates(markup_db: Path):
    result = runner.invoke(
        app,
        [
            "generate",
            "u2",
            "--db",
            str(markup_db),
            "--item",
            "B01",
            "--method",
            "profile",
            "--max-tokens",
            "5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "profile" and data["target"]["item"]["id"] == "B01"
    assert data["profile"]["kind"] == "profile" and data["retrieved"]
    assert data["llm_calls"] == 2 and data["generation_id"] >= 1
    assert data["messages"][-1]["role"] == "user"
    # The held-out review of B01 is not in the prompt, though it travels with the result.
    assert data["target"]["held_out"]["text"] not in json.dumps(data["messages"])
    # What the prompt cost, part by part, adds up to what llama.cpp read.
    cost = data["prompt_cost"]
    assert cost["total"] == data["stats"]["prompt_tokens"]
    parts = ("descriptions", "past_reviews", "profile", "rest")
    assert sum(cost[p] for p in parts) == cost["total"]
    assert cost["descriptions"] == 0  # these items have no description
    assert cost["past_reviews"] > 0 and cost["profile"] > 0 and cost["rest"] > 0


def test_the_paper_preset_runs_free_text_differences_with_the_bundled_model(
    markup_db: Path, bundled_generator, bundled_embedder
):
    from dpl_engine import Engine, EngineConfig
    from models import SamplingParams
    from user_store import UserStore

    config = EngineConfig(
        preset="paper",
        generation=SamplingParams(max_tokens=8),
        analysis=SamplingParams(max_tokens=24),  # short answers keep the test quick
    )
    with UserStore(markup_db) as store:
        engine = Engine(store, bundled_generator, bundled_embedder, config)
        result = engine.generate(engine.held_out_target("u1"), "dpl")
    assert "differences-paper-v1" in result.prompt_version
    assert sorted(c.item.id for c in result.comparisons) == ["B01", "B02"]
    assert len(result.differences) == 2 and result.llm_calls == 4
    assert all(not d.structured and d.raw.strip() for d in result.differences)
    assert result.profile is not None and result.profile.kind == "dpl" and result.text


def test_an_unknown_preset_is_one_readable_line(markup_db: Path):
    bad = runner.invoke(app, ["generate", "u1", "--db", str(markup_db), "--preset", "papr"])
    assert bad.exit_code == 1 and "Unknown preset 'papr'" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "nobody"], "No user 'nobody'"),
        (["generate", "u1", "--method", "magic"], "Unknown method 'magic'"),
        (["generate", "u1", "--item", "B09"], "No item 'B09'"),
        (["generate", "u1", "--rating", "9"], "out of range"),
        (["compare", "u1", "--k", "0", "--no-llm"], "--k must be at least 1"),
        # KMeans refused -1 with a traceback; llama.cpp reads 2**32 - 1 as "random"
        (["compare", "u1", "--seed", "-1", "--no-llm"], "--seed -1 is out of range"),
        (["generate", "u1", "--seed", "4294967295"], "from 0 to 2147483647"),
    ],
)
def test_bad_input_is_one_readable_line(markup_db: Path, args: list[str], message: str):
    result = runner.invoke(app, [*args, "--db", str(markup_db)])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_a_bad_thread_count_is_one_readable_line(markup_db: Path, monkeypatch):
    monkeypatch.setenv("DPL_THREADS", "two")
    result = runner.invoke(app, ["generate", "u1", "--method", "rag", "--db", str(markup_db)])
    assert result.exit_code == 1
    assert "DPL_THREADS='two'" in result.stderr and "Traceback" not in result.output


def test_a_prompt_that_does_not_fit_names_dpl_n_ctx_and_a_larger_one_fits(
    markup_db: Path, monkeypatch
):
    monkeypatch.setenv("DPL_N_CTX", "64")  # the bare rag prompt alone is longer
    result = runner.invoke(app, ["generate", "u1", "--method", "rag", "--db", str(markup_db)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "has a 64-token context" in result.stderr
    assert "DPL_N_CTX=N (now 64; the model was trained on 8,192 tokens)" in result.stderr
    monkeypatch.setenv("DPL_N_CTX", "2048")
    args = ["generate", "u1", "--method", "rag", "--max-tokens", "4", "--db", str(markup_db)]
    assert runner.invoke(app, args).exit_code == 0


def test_item_the_user_has_not_reviewed_needs_rating_and_title(markup_db: Path, tmp_path: Path):
    from user_store import Item, UserStore

    store = UserStore(markup_db)
    store.upsert_items([Item("B04", "Brass slide", "A heavy brass guitar slide")])
    store.close()
    result = runner.invoke(app, ["generate", "u1", "--item", "B04", "--db", str(markup_db)])
    assert result.exit_code == 1 and "--rating R and --title TEXT" in result.stderr


def test_missing_database_is_reported(tmp_path: Path):
    result = runner.invoke(app, ["compare", "u1", "--db", str(tmp_path / "none.db"), "--no-llm"])
    assert result.exit_code == 1 and "dpl ingest" in result.stderr
    assert not (tmp_path / "none.db").exists()
