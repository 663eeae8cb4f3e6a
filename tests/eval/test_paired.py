"""The per-user paired comparison beside the evaluation table, on hand-made scores."""

from __future__ import annotations

import pytest
from scipy.stats import wilcoxon

from dpl_engine.evaluation import report as rp
from user_store.eval_store import ResultRow


def row(method: str, seed: int, user: str, r1: float, meteor: float | None = 0.1) -> ResultRow:
    return ResultRow(
        run_id=1, method=method, seed=seed, user_id=user, item_id="i", generation_id=None,
        text="t", reference="r", rouge1=r1, rougeL=r1 / 2, meteor=meteor, judge=None,
        judge_raw=None, llm_calls=1, comparison_items=0, prompt_tokens=1, completion_tokens=1,
        seconds=0.0, notes=[], created_at="",
    )  # fmt: skip


# dpl beats rag for u1-u5 and loses for u6; seeds 1 and 2 differ, so means over seeds count.
RAG = {f"u{n}": 0.10 + 0.01 * n for n in range(1, 7)}
DPL_GAIN = {"u1": 0.05, "u2": 0.04, "u3": 0.03, "u4": 0.02, "u5": 0.06, "u6": -0.01}


def cells() -> dict[tuple[str, int, str], ResultRow]:
    out = {}
    for user, base in RAG.items():
        for seed, jitter in ((1, 0.0), (2, 0.004)):
            out[("rag", seed, user)] = row("rag", seed, user, base + jitter)
            # METEOR is missing for u6 with dpl (as without WordNet): u6 drops out of METEOR only.
            meteor = None if user == "u6" else 0.2
            out[("dpl", seed, user)] = row(
                "dpl", seed, user, base + DPL_GAIN[user] + 2 * jitter, meteor
            )
    return out


def test_dpl_is_compared_with_each_method_user_by_user():
    diffs = rp.paired_diffs(cells(), ("rag", "dpl"), (1, 2), sorted(RAG))
    by_metric = {d.metric: d for d in diffs}
    assert set(by_metric) == {"rouge1", "rougeL", "meteor"}  # no judge scores at all
    r1 = by_metric["rouge1"]
    expected = [DPL_GAIN[u] + 0.002 for u in sorted(RAG)]  # dpl's extra seed-2 jitter, averaged
    assert (r1.method, r1.baseline, r1.users) == ("dpl", "rag", 6)
    assert r1.mean_diff == pytest.approx(sum(expected) / 6)
    assert (r1.better, r1.worse) == (5, 1)
    assert r1.p_value == pytest.approx(wilcoxon(expected).pvalue)
    assert by_metric["meteor"].users == 5 and by_metric["meteor"].better == 5


def test_identical_scores_have_no_p_value_and_the_table_says_so():
    same = {k: v for k, v in cells().items() if k[0] == "rag"}
    same |= {("dpl", s, u): r for (m, s, u), r in same.items()}
    (r1, *_) = rp.paired_diffs(same, ("rag", "dpl"), (1, 2), sorted(RAG))
    assert (r1.mean_diff, r1.better, r1.worse, r1.p_value) == (0.0, 0, 0, None)
    assert rp.format_paired(r1) == "+0.0000 (p n/a; 0↑ 0↓)"
    assert rp.paired_diffs(same, ("dpl",), (1, 2), sorted(RAG)) == ()


def test_two_runs_are_paired_user_by_user_over_the_same_targets_and_seeds():
    from dataclasses import replace

    from dpl_engine import EngineError

    base = [r for (m, _s, _u), r in cells().items() if m == "rag"]
    # Run 2: rag with an adapter, the dpl gains of the cells above; seed 3 only in run 2,
    # and u6's target is another item there (another split), so u6 cannot be paired.
    adapted = [replace(r, run_id=2, rouge1=r.rouge1 + DPL_GAIN[r.user_id],
                       item_id="j" if r.user_id == "u6" else r.item_id) for r in base]
    adapted.append(replace(base[0], run_id=2, seed=3))
    made = rp.compare_runs(adapted, base, 2, 1)
    assert made.seeds == (1, 2)
    (r1,) = [d for d in made.paired if d.metric == "rouge1"]
    gains = [DPL_GAIN[u] for u in sorted(RAG) if u != "u6"]
    assert (r1.method, r1.baseline, r1.users, r1.better, r1.worse) == ("rag", "rag", 5, 5, 0)
    assert r1.mean_diff == pytest.approx(sum(gains) / 5)
    assert r1.p_value == pytest.approx(wilcoxon(gains).pvalue)
    header, rows = rp.comparison_table(made)
    assert header[0] == "run 2 vs run 1" and rows[0][0] == "rag vs rag"

    with pytest.raises(EngineError, match="share no seed"):
        rp.compare_runs([replace(r, seed=9) for r in adapted], base, 2, 1)
    with pytest.raises(EngineError, match="different splits"):
        rp.compare_runs([replace(r, item_id="k") for r in adapted], base, 2, 1)
