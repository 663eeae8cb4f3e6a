"""The evaluation runner on the real dev data with scripted models (fast); the real models
run in test_real_eval.py."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

from benchmarks.common import copy_db
from dpl_engine import EngineConfig
from dpl_engine.evaluation import metrics
from dpl_engine.evaluation import report as rp
from dpl_engine.evaluation import runner as ev
from dpl_engine.evaluation import split as sp
from models import ChatMessage, SamplingParams, TextStream
from tests.engine.fakes import FakeEmbedder, FakeGenerator, ListStream, prompt_text
from user_store import UserStore
from user_store.eval_store import EvalStore

ENGINE = EngineConfig(m=2)


class SeededGenerator(FakeGenerator):
    """Writes a different review for each sampling seed, so seeds really differ."""

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        words = ["great", "tone", "cheap", "sturdy", "strings", "pedal", "sound", "works"]
        seed = params.seed or 0
        self.review = " ".join(words[(seed + i) % len(words)] for i in range(4 + seed % 3))
        return super().stream(messages, params)


class InterruptingGenerator(FakeGenerator):
    """Raises KeyboardInterrupt (as Ctrl-C does) on the n-th review generation."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        if self._kind(messages) == "generate" and self.calls["generate"] + 1 == self.at:
            raise KeyboardInterrupt
        return super().stream(messages, params)


class ScriptedJudge(FakeGenerator):
    """Answers the judge prompt with a valid score, then garbage, alternately."""

    def __init__(self) -> None:
        super().__init__(model_id="fake-judge")
        self.replies = 0

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TextStream:
        self.replies += 1
        text = "Score: 8" if self.replies % 2 else "I cannot say."
        return ListStream([text], 10)


def config(**kw) -> ev.EvalConfig:
    base = dict(methods=("none", "rag", "profile", "dpl"), seeds=(1,), users=3, engine=ENGINE)
    base.update(kw)
    return ev.EvalConfig(**base)


def words(text: str, n: int = 8) -> str:
    return " ".join(text.split()[:n])


def test_every_cell_is_stored_and_a_rerun_generates_nothing(dev):
    store, split = dev
    cfg = config(seeds=(1, 2))
    gen = FakeGenerator()
    report = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg).execute()
    assert gen.calls["generate"] == 3 * 2 * 4
    assert len(report.users) == 3 and report.incomplete_users == 0
    assert [r.method for r in report.rows] == ["none", "rag", "profile", "dpl"]
    assert report.status == "done"
    rows = EvalStore(store).results(report.run_id)
    assert len(rows) == 24
    assert all(row.generation_id is not None and row.reference for row in rows)
    assert {r.user_id for r in rows} == set(report.users)

    again = FakeGenerator()
    rerun = ev.Evaluation(store, split, again, FakeEmbedder(), cfg).execute()
    assert again.total_calls == 0
    assert rerun.run_id == report.run_id and rerun.rows == report.rows

    # More users extend the same run: only the new user's cells are generated.
    more = FakeGenerator()
    grown = ev.Evaluation(store, split, more, FakeEmbedder(), config(seeds=(1, 2), users=4))
    assert grown.selected_users()[:3] == report.users
    assert grown.execute().run_id == report.run_id
    assert more.calls["generate"] == 2 * 4


def test_no_target_text_appears_in_any_prompt(dev):
    store, split = dev
    gen = FakeGenerator()
    report = ev.Evaluation(store, split, gen, FakeEmbedder(), config(users=4)).execute()
    dpl = next(r for r in report.rows if r.method == "dpl")
    assert dpl.comparison_items > 0  # comparison users were really drawn
    assert {"generate", "profile", "differences"} <= set(gen.calls)
    prompts = [" ".join(prompt_text(msgs).split()) for _, msgs in gen.prompts]
    targets = [store.review(u.user_id, u.test).text for u in split.users]
    leaked = [t for t in targets if any(words(t) in p for p in prompts)]
    assert leaked == []
    # The check can see review text: profile reviews of the evaluated users do show up.
    shown = [
        store.review(u, i).text
        for u in report.users
        for i in split.user(u).profile + (split.user(u).val,)
    ]
    assert any(words(t) in p for t in shown for p in prompts)


def test_no_target_text_appears_in_any_prompt_under_the_paper_preparation(
    mi5_db: Path, tmp_path: Path
):
    from dpl_engine.evaluation.paper_split import PaperSplitParams

    # The paper's preparation with the stages the dev data cannot meet relaxed (it has no
    # item metadata and few long histories), and the paper preset throughout.
    params = PaperSplitParams(
        min_description_chars=0,
        item_fields=False,
        min_item_reviewers=2,
        min_user_reviews=6,
        inputs=4,
        min_profile_item_users=2,
        min_profile_reviews=6,
    )
    with UserStore(copy_db(mi5_db, tmp_path / "mi5.db")) as store:
        split = sp.prepare_paper(store, params)
        gen = FakeGenerator()
        cfg = config(users=4, engine=EngineConfig(preset="paper"))
        report = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg).execute()
        assert next(r for r in report.rows if r.method == "dpl").comparison_items > 0
        assert gen.calls["differences"] > 0 and "Preset paper" in "\n".join(rp.header_lines(report))
        prompts = [" ".join(prompt_text(msgs).split()) for _, msgs in gen.prompts]
        shown = [store.review(u.user_id, i).text for u in split.users for i in (*u.profile, u.val)]
        # A target that begins like a visible review (one user posted nearly the same text on
        # two items, and whitespace keeps them apart) cannot be told from it by its words.
        targets = [
            text
            for u in split.users
            if not any(
                words(v) == words(text := store.review(u.user_id, u.test).text) for v in shown
            )
        ]
        assert len(targets) >= len(split.users) - 2
        assert [t for t in targets if any(words(t) in p for p in prompts)] == []
        # Profiles do reach the prompts, so the check can see review text.
        shown = [store.review(u, i).text for u in report.users for i in split.user(u).profile]
        assert any(words(t) in p for t in shown for p in prompts)


def test_paper_runs_from_before_the_published_row_order_are_runs_of_their_own(dev):
    store, split = dev
    gen = FakeGenerator()

    def runner(preset: str) -> ev.Evaluation:
        cfg = config(methods=("none",), users=1, engine=EngineConfig(m=2, preset=preset))
        return ev.Evaluation(store, split, gen, FakeEmbedder(), cfg)

    assert "selection" not in runner("dpl").run_config()  # dpl's runs keep their identity
    paper = runner("paper")
    current = paper.run_config()
    assert current["selection"] == "paper-v2"
    earlier = {k: v for k, v in current.items() if k != "selection"}
    evals = EvalStore(store)
    old, _ = evals.find_or_create_run(split.split_id, earlier)
    report = paper.execute()
    assert report.run_id != old.id and "user-id order" in rp.preset_line(report)
    assert "as run before" in rp.preset_line(rp.stored_report(store, old.id))


def test_validation_targets_hide_the_test_reviews_too(dev):
    store, split = dev
    gen = FakeGenerator()
    ev.Evaluation(store, split, gen, FakeEmbedder(), config(split="val", users=3)).execute()
    prompts = [" ".join(prompt_text(msgs).split()) for _, msgs in gen.prompts]
    hidden = [store.review(u.user_id, i).text for u in split.users for i in (u.val, u.test)]
    assert not [t for t in hidden if any(words(t) in p for p in prompts)]


def test_ctrl_c_keeps_finished_work_and_the_rerun_does_only_the_rest(dev):
    store, split = dev
    cfg = config()
    runner = ev.Evaluation(store, split, InterruptingGenerator(at=6), FakeEmbedder(), cfg)
    plan = runner.plan()
    with pytest.raises(KeyboardInterrupt):
        runner.execute(plan)
    evals = EvalStore(store)
    assert evals.run(plan.run.id).status == "stopped"
    assert len(evals.done_cells(plan.run.id)) == 5

    rest = FakeGenerator()
    report = ev.Evaluation(store, split, rest, FakeEmbedder(), cfg).execute()
    assert rest.calls["generate"] == 12 - 5
    assert report.run_id == plan.run.id and report.status == "done"
    assert len(evals.results(plan.run.id)) == 12


def test_the_table_is_mean_and_std_over_seeds_of_per_seed_scores(dev):
    store, split = dev
    wordnet = metrics.load_wordnet()
    seeds = (1, 2, 3)
    cfg = config(methods=("none", "rag"), seeds=seeds)
    report = ev.Evaluation(store, split, SeededGenerator(), FakeEmbedder(), cfg).execute()
    rows = EvalStore(store).results(report.run_id)
    for method_row in report.rows:
        per_seed_r1, per_seed_bleu, per_seed_paper = [], [], []
        for seed in seeds:
            mine = [r for r in rows if r.method == method_row.method and r.seed == seed]
            assert len(mine) == 3
            per_seed_r1.append(statistics.fmean(r.rouge1 for r in mine))
            per_seed_bleu.append(
                metrics.corpus_bleu([r.text for r in mine], [r.reference for r in mine])
            )
            per_seed_paper.append(
                metrics.paper_scores(
                    [r.text for r in mine], [r.reference for r in mine], wordnet=wordnet
                )
            )
        r1 = method_row.metrics["rouge1"]
        assert r1.per_seed == pytest.approx(per_seed_r1)
        assert r1.mean == pytest.approx(statistics.fmean(per_seed_r1))
        assert r1.std == pytest.approx(statistics.stdev(per_seed_r1)) and r1.std > 0
        assert method_row.metrics["bleu"].mean == pytest.approx(statistics.fmean(per_seed_bleu))
        assert method_row.metrics["meteor"].mean is not None  # WordNet is installed here
        assert method_row.metrics["judge"].mean is None  # no judge was asked
        # The second table: each seed scored the published way, then mean over seeds.
        for name in ("rouge1", "rougeL", "meteor"):
            values = [getattr(p, name) for p in per_seed_paper]
            assert method_row.metrics[f"paper_{name}"].per_seed == pytest.approx(values)


def test_judge_added_later_scores_without_regenerating_and_counts_failures(dev):
    store, split = dev
    cfg = config(methods=("none",), users=4)
    ev.Evaluation(store, split, FakeGenerator(), FakeEmbedder(), cfg).execute()
    gen, judge = FakeGenerator(), ScriptedJudge()
    report = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg, judge=judge).execute()
    assert gen.total_calls == 0 and judge.replies == 4
    row = report.rows[0]
    assert (row.judged, row.judge_failures) == (4, 2)
    assert row.metrics["judge"].mean == pytest.approx(0.8)  # the two valid replies only
    assert report.judge_model == "fake-judge"
    md = rp.to_markdown(report)
    assert "| Judge |" in md and "2 unparsable" in md


def test_writers_give_the_same_table_as_markdown_csv_and_json(dev, tmp_path: Path):
    store, split = dev
    report = ev.Evaluation(
        store, split, FakeGenerator(), FakeEmbedder(), config(methods=("none", "rag"))
    ).execute()
    paths = rp.write_outputs(report, tmp_path / "out")
    assert [p.suffix for p in paths] == [".md", ".csv", ".json"]
    md = paths[0].read_text()
    assert "| Method | ROUGE-1 | ROUGE-L | METEOR | BLEU |" in md
    assert "items with >= 3 reviewers" in md and "3 users" in md
    assert "| rag vs | ROUGE-1 | ROUGE-L | METEOR |" in md and "Wilcoxon" in md
    assert rp.PAPER_CAPTION in md and "nltk word tokens" in md
    table = list(csv.DictReader(io.StringIO(paths[1].read_text())))
    assert len(table) == 2 * len(rp.METRICS)
    r1 = next(t for t in table if t["method"] == "rag" and t["metric"] == "rouge1")
    assert float(r1["mean"]) == pytest.approx(report.rows[1].metrics["rouge1"].mean, abs=1e-6)
    paper = next(t for t in table if t["method"] == "rag" and t["metric"] == "paper_rouge1")
    assert float(paper["mean"]) == pytest.approx(
        report.rows[1].metrics["paper_rouge1"].mean, abs=1e-6
    )
    data = json.loads(paths[2].read_text())
    assert data["run_id"] == report.run_id and len(data["users"]) == 3
    stored = rp.stored_report(store, report.run_id)
    assert stored.rows == report.rows and stored.paired == report.paired
    assert data["paired"][0]["baseline"] == "none"


def test_report_prints_the_paired_comparison_under_the_table(dev):
    from typer.testing import CliRunner

    from dpl_tui.cli import app

    store, split = dev
    cfg = config(methods=("none", "rag"), seeds=(1, 2))
    report = ev.Evaluation(store, split, SeededGenerator(), FakeEmbedder(), cfg).execute()
    result = CliRunner().invoke(
        app, ["eval", "--db", str(store.path), "--report", str(report.run_id)]
    )
    assert result.exit_code == 0, result.output
    assert "rag vs" in result.output and "Wilcoxon" in result.output
    # The second table, scored the published way (its caption may wrap).
    assert "Scored as the published evaluation scores" in " ".join(result.output.split())
    for d in report.paired:  # each mean difference is printed
        assert f"{d.mean_diff:+.4f}" in result.output


def test_a_stored_split_with_no_users_is_refused(dev):
    from dpl_engine import EngineError

    store, _ = dev
    empty = sp.prepare(store, sp.PAPER_DEFAULTS)
    with pytest.raises(EngineError, match="no users"):
        ev.Evaluation(store, empty, FakeGenerator(), FakeEmbedder(), config())


def test_unknown_methods_and_bad_counts_are_refused():
    from dpl_engine import EngineError

    with pytest.raises(EngineError, match="Unknown method 'gpt'"):
        ev.EvalConfig(methods=("none", "gpt")).check()  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="--users"):
        ev.EvalConfig(users=0).check()


def test_meteor_missing_from_a_run_without_wordnet_is_filled_in_later(dev, monkeypatch, tmp_path):
    from dpl_engine.evaluation.metrics import WORDNET_ENV

    if not metrics.wordnet_status().available:
        pytest.skip("WordNet is not installed (scripts/ensure-wordnet.sh)")
    store, split = dev
    cfg = config(methods=("none",), seeds=(1,))
    with monkeypatch.context() as m:
        m.setenv(WORDNET_ENV, str(tmp_path))  # an empty folder: METEOR unavailable
        first = ev.Evaluation(store, split, FakeGenerator(), FakeEmbedder(), cfg).execute()
    assert all(r.meteor is None for r in EvalStore(store).results(first.run_id))

    again = FakeGenerator()
    rerun = ev.Evaluation(store, split, again, FakeEmbedder(), cfg).execute()
    assert again.total_calls == 0 and rerun.run_id == first.run_id
    rows = EvalStore(store).results(first.run_id)
    assert all(r.meteor is not None and r.meteor >= 0 for r in rows) and len(rows) == 3
    assert rerun.rows[0].metrics["meteor"].mean is not None
