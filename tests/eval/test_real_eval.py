"""A short real evaluation: dev data, the bundled GGUF model through llama.cpp and the bundled
embedder, all four methods on two users with k = 2; and ``dpl split`` / ``dpl eval`` end to end
from the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_engine import EngineConfig
from dpl_engine.evaluation import report as rp
from dpl_engine.evaluation import runner as ev
from dpl_engine.evaluation import split as sp
from models import SamplingParams
from tests.engine.fakes import RecordingGenerator, prompt_text
from user_store import UserStore
from user_store.eval_store import EvalStore

pytestmark = pytest.mark.slow

DEV_FLAGS = ["--min-user-reviews", "6", "--min-item-reviewers", "3"]
SMALL = replace(EngineConfig(k=2, m=2), generation=SamplingParams(max_tokens=24))
METHODS = ("none", "rag", "profile", "dpl")


def bundled_embedder_id() -> str:
    from models.embeddings import embedder_id
    from models.registry import default_embedder_path

    return embedder_id(default_embedder_path())


def test_short_real_eval_gives_a_complete_table_and_resumes_without_generating(
    mi5_db: Path, tmp_path: Path, bundled_generator, bundled_embedder
):
    import jsonschema

    from dpl_engine.method.prompts import DIFFERENCES_SCHEMA

    with UserStore(copy_db(mi5_db, tmp_path / "mi5.db")) as store:
        split = sp.prepare(store, sp.SplitParams(200, 6, 500, 3))
        cfg = ev.EvalConfig(methods=METHODS, seeds=(7,), users=2, engine=SMALL)
        gen = RecordingGenerator(bundled_generator)
        runner = ev.Evaluation(
            store, split, gen, bundled_embedder, cfg, embedder_id=bundled_embedder_id()
        )
        events: list[ev.CellEvent] = []
        report = runner.execute(on_event=events.append)

        # Per user: a review for each method, a profile for profile and one for dpl; and one
        # differences call per comparison item (k = 2 at most), shared by nothing else.
        assert gen.calls["stream"] == 2 * 4 + 2 * 2
        assert 1 <= gen.calls["json"] <= 2 * 2
        assert [e.kind for e in events].count("done") == 8
        assert len(report.users) == 2 and report.status == "done"
        assert report.model_id == bundled_generator.model_id
        assert [row.method for row in report.rows] == list(METHODS)
        for row in report.rows:
            for metric in ("rouge1", "rougeL", "meteor"):
                value = row.metrics[metric].mean
                assert value is not None and 0 <= value <= 1
            assert 0 <= row.metrics["bleu"].mean <= 100
        # dpl against each other method, user by user, on the three per-review metrics.
        assert [(d.method, d.baseline, d.metric, d.users) for d in report.paired] == [
            ("dpl", m, metric, 2) for m in METHODS[:3] for metric in ("rouge1", "rougeL", "meteor")
        ]
        # The differences went through the real schema: each answer parsed and is valid, or
        # (at most one of them, cut at the 320-token limit mid-JSON) was kept as free text.
        for value in gen.json_values:
            jsonschema.validate(value, DIFFERENCES_SCHEMA)
        assert len(gen.json_values) + len(gen.json_fallbacks) == gen.calls["json"]
        assert len(gen.json_fallbacks) <= 1, gen.json_fallbacks
        results = EvalStore(store).results(report.run_id)
        assert len(results) == 8
        assert all(0 < r.completion_tokens <= 24 and r.text for r in results)
        assert sum(r.llm_calls for r in results) == gen.total_calls
        for r in results:  # each generation is also in the engine's generations table
            assert any(g.id == r.generation_id for g in store.generations(r.user_id, r.item_id))

        # No prompt of any method (retrieved reviews, comparison items, the others' reviews,
        # profiles) includes anyone's target.
        prompts = [" ".join(prompt_text(m).split()) for _, m in gen.prompts]
        assert {kind for kind, _ in gen.prompts} == {"stream", "json"}
        targets = [store.review(u.user_id, u.test).text for u in split.users]
        assert not [t for t in targets if any(" ".join(t.split()[:8]) in p for p in prompts)]

        again = RecordingGenerator(bundled_generator)
        rerun = ev.Evaluation(
            store, split, again, bundled_embedder, cfg, embedder_id=bundled_embedder_id()
        ).execute()
        assert again.total_calls == 0
        assert rerun.run_id == report.run_id and rerun.rows == report.rows
        md = rp.to_markdown(rerun)
        assert all(f"| {m} |" in md for m in METHODS)
        # every value is there; a p-value is n/a only for a tie on every user (with 24-token
        # answers two methods can both score 0 against a target), which the table says so
        assert "n/a" not in md.replace("(p n/a; 0↑ 0↓)", "")


def test_cli_split_suggests_thresholds_then_eval_runs_reports_and_lists(
    mi5_db: Path, tmp_path: Path
):
    from dpl_tui.cli import app

    db = copy_db(mi5_db, tmp_path / "mi5.db")
    runner = CliRunner()
    result = runner.invoke(app, ["split", "--db", str(db)])
    assert result.exit_code == 1
    assert "No user is left" in result.output
    assert "--min-chars 200 --min-user-reviews 6 --min-item-reviewers 3" in result.output

    result = runner.invoke(app, ["split", "--db", str(db), *DEV_FLAGS, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    with UserStore(db) as store:
        assert summary["users"] == len(sp.prepare(store, sp.SplitParams(200, 6, 500, 3)).users)

    out = tmp_path / "out"
    args = ["eval", "--db", str(db), "--methods", "none", "--users", "1", "--max-tokens", "8"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Evaluation run 1" in result.output and "ROUGE-1" in result.output
    assert "users with 6-500 reviews" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "eval-run1.csv",
        "eval-run1.json",
        "eval-run1.md",
    ]

    result = runner.invoke(app, [*args, "--json"])  # resumed: nothing left to generate
    assert result.exit_code == 0, result.output
    assert "1 already done" in result.output

    result = runner.invoke(app, ["eval", "--db", str(db), "--report", "1"])
    assert result.exit_code == 0 and "| none" not in result.output and "none" in result.output
    assert "Wilcoxon" not in result.output  # one method: nothing to pair
    result = runner.invoke(app, ["eval", "--db", str(db), "--list"])
    assert result.exit_code == 0 and "done" in result.output
    result = runner.invoke(app, ["eval", "--db", str(db), "--list", "--json"])
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    assert (listed["run_id"], listed["status"], listed["split"]) == (1, "done", "test")
    assert (
        listed["generations"] == 1 and listed["config"]["engine"]["generation"]["max_tokens"] == 8
    )

    # Another run of the same targets (longer reviews), paired with run 1 user by user.
    result = runner.invoke(app, [*args[:-1], "12"])
    assert result.exit_code == 0 and "Evaluation run 2" in result.output, result.output
    result = runner.invoke(
        app, ["eval", "--db", str(db), "--report", "2", "--against", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    against = json.loads(result.output)["against"]
    assert (against["run_id"], against["against"], against["seeds"]) == (2, 1, [42])
    assert [(d["method"], d["baseline"], d["users"]) for d in against["paired"]] == [
        ("none", "none", 1)
    ] * 3
    result = runner.invoke(app, ["eval", "--db", str(db), "--report", "2", "--against", "1"])
    assert result.exit_code == 0 and "run 2 vs run 1" in result.output
    result = runner.invoke(app, ["eval", "--db", str(db), "--report", "2", "--against", "99"])
    assert result.exit_code == 1 and "No evaluation run 99" in result.output

    result = runner.invoke(app, ["eval", "--db", str(db), "--report", "99"])
    assert result.exit_code == 1 and "No evaluation run 99" in result.output
    result = runner.invoke(app, ["eval", "--db", str(db), "--methods", "none,gpt"])
    assert result.exit_code == 1 and "Unknown method 'gpt'" in result.output
