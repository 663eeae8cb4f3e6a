"""`dpl eval` reports the share of uninformative LLM differences per run, and stores the dpl
profile's options with the run (dev data, scripted models)."""

from __future__ import annotations

from dataclasses import replace

from dpl_engine.evaluation import report as rp
from dpl_engine.evaluation import runner as ev
from tests.engine.fakes import FakeEmbedder, FakeGenerator
from tests.eval.test_runner import ENGINE, config
from user_store.eval_store import EvalStore

ECHOES = {
    "writing": "Plainer words, shorter sentences than the others.",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "Rating: 5 out of 5",
}


def test_the_share_of_uninformative_differences_is_stored_and_reported(dev):
    store, split = dev
    gen = FakeGenerator(differences=ECHOES)
    report = ev.Evaluation(
        store, split, gen, FakeEmbedder(), config(methods=("profile", "dpl"), users=2)
    ).execute()
    rows = {r.method: r for r in report.rows}
    assert rows["profile"].differences == 0 and rows["profile"].uninformative_share is None
    dpl = rows["dpl"]
    assert dpl.differences == 3 * gen.calls["differences"] > 0
    assert dpl.uninformative == 2 * gen.calls["differences"]  # the emotional and semantic echoes
    stored = [r for r in EvalStore(store).results(report.run_id) if r.method == "dpl"]
    assert sum(r.differences for r in stored) == dpl.differences
    md = rp.to_markdown(report)
    assert "dpl: 67% of the LLM's differences uninformative" in md
    assert "profile: " not in md.split("uninformative")[0].splitlines()[-1]
    assert "uninformative" in rp.to_csv(report)
    # Re-reported from the store alone, the share is the same.
    again = rp.stored_report(store, report.run_id)
    assert {r.method: r.uninformative for r in again.rows}["dpl"] == dpl.uninformative


def test_profile_options_make_a_run_of_their_own_that_shares_the_differences(dev):
    store, split = dev
    gen = FakeGenerator(differences=ECHOES)
    base = ev.Evaluation(store, split, gen, FakeEmbedder(), config(methods=("dpl",), users=2))
    first = base.execute()
    calls = gen.calls["differences"]
    lines = {
        "measured_in_profile": "measured differences in words given",
        "drop_uninformative": "uninformative LLM differences left out",
    }
    for option, line in lines.items():
        cfg = config(methods=("dpl",), users=2, engine=replace(ENGINE, **{option: True}))
        runner = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg)
        assert runner.run_config()["engine"][option] is True
        report = runner.execute()
        assert report.run_id != first.run_id
        assert gen.calls["differences"] == calls  # cached differences, shared by the variants
        assert any(line in h for h in rp.header_lines(report))
    assert not any(any(line in h for line in lines.values()) for h in rp.header_lines(first))
