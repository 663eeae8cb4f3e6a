"""``dpl tune`` for real: the bundled GGUF trained through transformers and PEFT on the dev
data, exported, registered, and applied by llama.cpp in ``dpl generate``; interrupted and
resumed; bad input refused in one line with nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_tui.cli import app
from user_store import locations

pytestmark = pytest.mark.slow
runner = CliRunner()

SPLIT = ["--min-user-reviews", "6", "--min-item-reviewers", "3"]
SMALL = ["--examples", "3", "--per-user", "2", "--holdout-users", "5", "--max-tokens", "512",
         "--max-review-chars", "300",
         "--k", "2", "--rank", "4", "--epochs", "1"]


@pytest.fixture
def dev_db(mi5_db: Path, tmp_path: Path) -> Path:
    return copy_db(mi5_db, tmp_path / "dev.db")


def invoke(*args: str):
    return runner.invoke(app, list(args))


def settings():
    from user_store.config import Settings

    return Settings.load()


def held_out_user(db: Path) -> str:
    from dpl_engine.evaluation import split as sp
    from dpl_engine.tuning import task as tune
    from user_store import UserStore

    store = UserStore(db)
    try:
        chosen = sp.load(store)
        return tune.held_out_users(chosen, 1)[0]
    finally:
        store.close()


def test_tune_trains_once_registers_and_generate_applies_it(dev_db: Path, dpl_home: Path):
    first = invoke("tune", "--method", "rag", "--name", "t1", *SMALL, *SPLIT, "--db",
                   str(dev_db), "--json")
    assert first.exit_code == 0, first.output
    made = json.loads(first.output[first.output.index("{"):])
    assert made["trained"] is True and made["examples"] == 3 and made["method"] == "rag"
    assert made["teacher_id"] == made["base_model_id"]
    assert made["first_loss"] > 0 and made["final_loss"] > 0
    path = Path(made["path"])
    assert path.is_file() and path.parent == dpl_home / "adapters"
    assert settings().adapters == {"t1": str(path)}
    lines = (dpl_home / "adapters" / "t1.work" / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["completion"] for x in lines)

    again = invoke("tune", "--method", "rag", "--name", "t1", *SMALL, *SPLIT, "--db",
                   str(dev_db), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output[again.output.index("{"):])["trained"] is False

    listed = invoke("models", "--json")
    assert listed.exit_code == 0, listed.output
    rows = [r for r in json.loads(listed.output) if r.get("adapter")]
    assert [r["name"] for r in rows] == ["t1"]
    assert rows[0]["base_model_id"] == made["base_model_id"] and rows[0]["method"] == "rag"

    user = held_out_user(dev_db)
    out = invoke("generate", user, "--method", "rag", "--adapter", "t1", "--max-tokens", "16",
                 "--db", str(dev_db), "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["model_id"] == f"{made['base_model_id']}+t1@{made['digest'][:12]}"
    plain = invoke("generate", user, "--method", "rag", "--max-tokens", "16", "--db",
                   str(dev_db), "--json")
    assert json.loads(plain.output)["model_id"] == made["base_model_id"]


def test_a_contrastive_run_trains_on_other_users_reviews_and_reports_what_it_did(
    dev_db: Path, dpl_home: Path
):
    args = ["tune", "--method", "rag", "--name", "tc", *SMALL, *SPLIT, "--db", str(dev_db),
            "--contrast", "1", "--negatives", "2"]
    told = invoke(*args)
    assert told.exit_code == 0, told.output
    assert "Contrastive term" in told.output and "scored first in" in told.output
    # the adapter keeps what the run did: the same command reads it back
    made = invoke(*args, "--json")
    assert made.exit_code == 0, made.output
    meta = json.loads(made.output[made.output.index("{"):])
    assert meta["trained"] is False and meta["options"]["contrast"] == 1.0
    assert meta["options"]["negatives"] == 2
    assert meta["first_contrast_loss"] > 0 and meta["final_contrast_loss"] > 0
    assert 0 <= meta["own_first_early"] <= 1 and 0 <= meta["own_first_late"] <= 1
    lines = [json.loads(x) for x in
             (dpl_home / "adapters" / "tc.work" / "examples.jsonl").read_text().splitlines()]
    with_negatives = [x for x in lines if x.get("negatives")]
    assert meta["without_negatives"] == len(lines) - len(with_negatives) < len(lines)
    from user_store import UserStore

    store = UserStore(dev_db)
    try:
        for x in with_negatives:
            assert 1 <= len(x["negatives"]) <= 2
            for other in x["negatives"]:
                assert other["user_id"] != x["user_id"]
                assert other["text"] == store.review(other["user_id"], x["item_id"]).text
    finally:
        store.close()
    listed = invoke("models", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["contrast"] for r in json.loads(listed.output) if r.get("adapter")] == [1.0]
    table = runner.invoke(app, ["models"], env={"COLUMNS": "300"})  # no cell wraps
    assert "rag, contrast 1" in table.output, table.output
    # a plain run of the same name and options is another adapter: it trains again
    plain = invoke("tune", "--method", "rag", "--name", "tc", *SMALL, *SPLIT, "--db",
                   str(dev_db), "--json")
    assert plain.exit_code == 0, plain.output
    again = json.loads(plain.output[plain.output.index("{"):])
    assert again["trained"] is True and "first_contrast_loss" not in again
    assert again["digest"] != meta["digest"]
    listed = invoke("models", "--json")
    assert [r["contrast"] for r in json.loads(listed.output) if r.get("adapter")] == [0.0]


def test_a_per_user_adapter_is_kept_only_when_better_and_then_applied(
    dev_db: Path, dpl_home: Path
):
    made = invoke("tune", "--method", "rag", "--name", "t1", *SMALL, *SPLIT, "--db",
                  str(dev_db), "--json")
    assert made.exit_code == 0, made.output
    task = json.loads(made.output[made.output.index("{"):])
    user = held_out_user(dev_db)
    personal = ["tune", "--user", user, "--adapter", "t1", "--examples", "2", "--rank", "2",
                "--max-tokens", "768", "--max-review-chars", "300", "--k", "2",
                "--review-tokens", "24", *SPLIT, "--db", str(dev_db), "--json"]
    first = invoke(*personal)
    assert first.exit_code == 0, first.output
    verdict = json.loads(first.output[first.output.index("{"):])
    assert verdict["trained"] is True and verdict["examples"] == 2
    assert verdict["seeds"] == [1, 2] and verdict["user_id"] == user
    assert verdict["kept"] == (verdict["personal_rouge1"] > verdict["task_rouge1"])
    folder = dpl_home / "adapters" / "t1.users"
    assert Path(verdict["path"]).exists() == verdict["kept"]
    assert json.loads((folder / "verdicts.json").read_text())[user]["kept"] == verdict["kept"]
    again = invoke(*personal)
    assert json.loads(again.output[again.output.index("{"):])["trained"] is False
    listed = [r for r in json.loads(invoke("models", "--json").output) if r.get("adapter")]
    assert listed[0]["per_user"] == {"measured": 1, "kept": int(verdict["kept"])}

    task_id = f"{task['base_model_id']}+t1@{task['digest'][:12]}"
    gen = ["generate", user, "--method", "rag", "--adapter", "t1", "--max-tokens", "8",
           "--k", "2", "--db", str(dev_db), "--json"]
    used = json.loads(invoke(*gen).output)["model_id"]
    if verdict["kept"]:
        assert used.startswith(task_id + f"+t1/{user}@")
    else:
        assert used == task_id
    assert json.loads(invoke(*gen, "--no-personal").output)["model_id"] == task_id

    one_line_error(invoke("tune", "--user", user, *SPLIT, "--db", str(dev_db)),
                   "on top of a task adapter")
    one_line_error(invoke("tune", "--user", "nobody", "--adapter", "t1", *SPLIT, "--db",
                          str(dev_db)), "'nobody' is not in this split")


def test_a_teacher_reads_the_users_in_training_and_in_use(dev_db: Path, tmp_path: Path):
    from models.registry import default_gguf_path, model_id_for

    teacher = tmp_path / "teacher-copy.gguf"  # the same weights under another id
    shutil.copyfile(default_gguf_path(), teacher)
    tuned = invoke("tune", "--method", "dpl", "--name", "t2", "--teacher", str(teacher),
                   *SMALL[:-2], "--examples", "2", "--analysis-max-tokens", "48", *SPLIT,
                   "--db", str(dev_db), "--json")
    assert tuned.exit_code == 0, tuned.output
    made = json.loads(tuned.output[tuned.output.index("{"):])
    assert made["teacher_id"] == model_id_for(teacher) and made["llm_calls"] > 0

    from user_store import UserStore

    store = UserStore(dev_db)
    try:
        made_by = {row["model_id"] for row in store.db["artifacts"].rows_where(
            "kind in ('differences', 'profile')")}
    finally:
        store.close()
    assert made_by == {model_id_for(teacher)}  # the student's base never read a user

    user = held_out_user(dev_db)
    out = invoke("generate", user, "--method", "profile", "--adapter", "t2", "--k", "2",
                 "--max-tokens", "16", "--db", str(dev_db), "--json")
    assert out.exit_code == 0, out.output
    store = UserStore(dev_db)
    try:
        generation = store.generations(user)[-1]
    finally:
        store.close()
    assert generation.params["analyst"] == model_id_for(teacher)
    assert "+t2@" in generation.model_id


def test_a_teacher_behind_a_real_server_reads_the_users(dev_db: Path, tmp_path: Path):
    """The distillation road people take: a bigger model behind an LLM server is the teacher
    (here llama-cpp-python's server with the bundled model, on loopback)."""
    from tests.models.llama_server import SERVED, llama_server
    from user_store import UserStore

    with llama_server(tmp_path) as url:
        added = invoke("models", "add", "big", "--url", url, "--model", SERVED)
        assert added.exit_code == 0, added.output
        tuned = invoke("tune", "--method", "profile", "--name", "t4", "--teacher", "big",
                       *SMALL[:-2], "--examples", "2", "--analysis-max-tokens", "48", *SPLIT,
                       "--db", str(dev_db), "--json")
    assert tuned.exit_code == 0, tuned.output
    made = json.loads(tuned.output[tuned.output.index("{"):])
    assert SERVED in made["teacher_id"] and made["teacher_id"] != made["base_model_id"]
    assert made["llm_calls"] >= 2 and made["examples"] == 2
    store = UserStore(dev_db)
    try:
        made_by = {row["model_id"] for row in store.db["artifacts"].rows_where(
            "kind = 'profile'")}
    finally:
        store.close()
    assert made_by == {made["teacher_id"]}  # every profile came from the server


def test_ctrl_c_keeps_a_checkpoint_that_resume_continues(dev_db: Path, tmp_path: Path):
    from dpl_engine import CancelToken, Engine, EngineConfig
    from dpl_engine.evaluation import split as sp
    from dpl_engine.tuning import task as tune
    from models.llama import load_generator
    from models.registry import default_gguf_path
    from models.training import LoraOptions
    from tests.engine.fakes import FakeEmbedder
    from user_store import UserStore

    store = UserStore(dev_db)
    try:
        chosen = sp.prepare(store, sp.SplitParams(min_user_reviews=6, min_item_reviewers=3))
        config = tune.TuneConfig(method="none", examples=4, holdout_users=5, max_tokens=256,
                                 engine=EngineConfig(k=2),
                                 lora=LoraOptions(rank=4, checkpoint_every=2))
        engine = Engine(store, load_generator(), FakeEmbedder(), config.engine,
                        exclude_reviews=chosen.hidden_reviews("val"))
        token = CancelToken()
        steps = []

        def on_step(report) -> None:
            steps.append(report)
            if report.step == 3:
                token.cancel()  # as Ctrl-C does, between two steps

        kw = dict(name="t3", base_path=default_gguf_path(), folder=tmp_path / "adapters")
        with pytest.raises(KeyboardInterrupt):
            tune.train_adapter(engine, chosen, config, on_step=on_step, cancel=token, **kw)
        assert (tmp_path / "adapters" / "t3.work" / "checkpoint.pt").exists()
        assert not (tmp_path / "adapters" / "t3.gguf").exists()  # nothing half-written
        done = tune.train_adapter(engine, chosen, config, resume=True, **kw)
        assert done.trained and done.resumed_from == 3 and done.meta["steps"] == 4
        assert not (tmp_path / "adapters" / "t3.work" / "checkpoint.pt").exists()
        twice = tune.train_adapter(engine, chosen, config, resume=True, **kw)
        assert twice.trained is False  # the same run again trains nothing
    finally:
        store.close()


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output  # the message is one line, printed once
    for part in parts:
        assert part in errors[0], errors[0]


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(
    dev_db: Path, tmp_path: Path, dpl_home: Path
):
    import numpy as np

    from models.adapters import write_adapter
    from models.registry import default_gguf_path

    base = ["--db", str(dev_db)]
    # the name is the adapter's file name: refused before the split or a model is touched
    for bad in ("a/b", "../up", ".hidden", "", "x" * 65):
        one_line_error(invoke("tune", "--name", bad, "--db", str(tmp_path / "no.db")),
                       f"Adapter name {bad!r} cannot be used")
    assert not (tmp_path / "no.db").exists() and not locations.adapters_dir().exists()
    # options the other kind of run would ignore are refused, not dropped silently
    one_line_error(invoke("tune", "--user", "u", "--adapter", "t", "--name", "n", "--resume"),
                   "--name, --resume only apply without --user: drop them, or leave out --user")
    one_line_error(invoke("tune", "--user", "u", "--method", "rag", "--per-user", "2"),
                   "--method, --per-user only apply without --user")
    one_line_error(invoke("tune", "--review-tokens", "64"),
                   "--review-tokens only applies with --user: drop it, or add --user USER")
    one_line_error(invoke("tune", "--adapter", "t"), "--adapter only applies with --user")
    one_line_error(invoke("tune", "--user", "u", "--contrast", "1"),
                   "--contrast only applies without --user")
    one_line_error(invoke("tune", "--negatives", "2"),
                   "--negatives only applies with --contrast: drop it, or add --contrast")
    one_line_error(invoke("tune", "--contrast", "-1", *SPLIT, *base),
                   "--contrast must be between 0 (off) and 100 (got -1.0)")
    one_line_error(invoke("tune", "--contrast", "1", "--negatives", "0", *SPLIT, *base),
                   "--negatives must be at least 1")
    one_line_error(invoke("tune", "--holdout-users", "100000", *SPLIT, *base),
                   "leaves no training examples")
    one_line_error(invoke("tune", "--resume", "--method", "none", *SMALL, *SPLIT, *base),
                   "no interrupted run")
    added = invoke("models", "add", "down", "--url", "http://127.0.0.1:9/v1", "--model", "x")
    assert added.exit_code == 0, added.output
    one_line_error(invoke("tune", "--teacher", "down", *SMALL, *SPLIT, *base),
                   "http://127.0.0.1:9")
    one_line_error(invoke("tune", "--model", "down", *SMALL, *SPLIT, *base), "LLM server")

    user = held_out_user(dev_db)
    gen = ["generate", user, "--method", "none", "--max-tokens", "8", *base]
    one_line_error(invoke(*gen, "--adapter", str(default_gguf_path())), "not a LoRA adapter")
    one_line_error(invoke(*gen, "--adapter", "nothing-here"), "No adapter named 'nothing-here'")
    other = write_adapter(
        tmp_path / "other.gguf",
        {"model.layers.0.self_attn.q_proj": (np.ones((2, 576), np.float32),
                                             np.zeros((576, 2), np.float32))},
        alpha=4.0, architecture="llama", block_count=30, n_head=9, n_head_kv=3,
        meta={"base_model_id": "another-base.gguf:1", "name": "other"},
    )
    one_line_error(invoke(*gen, "--adapter", str(other)), "another-base.gguf:1",
                   "SmolLM2-135M-Instruct")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(other.read_bytes()[:300])
    one_line_error(invoke(*gen, "--adapter", str(cut)), "truncated")

    assert settings().adapters == {}
    assert not list((dpl_home / "adapters").glob("*.gguf"))


def test_a_merged_adapter_is_a_model_that_writes_while_its_base_reads(
    dev_db: Path, tmp_path: Path, dpl_home: Path
):
    import numpy as np

    from models.adapters import write_adapter
    from models.registry import default_gguf_path, model_id_for
    from user_store import UserStore

    base_id = model_id_for(default_gguf_path())
    rng = np.random.default_rng(0)
    pairs = {f"model.layers.{i}.self_attn.v_proj": (
        rng.normal(0, 0.05, (4, 576)).astype(np.float32),
        rng.normal(0, 0.05, (192, 4)).astype(np.float32)) for i in range(30)}
    adapter = write_adapter(tmp_path / "tiny.gguf", pairs, alpha=8.0, architecture="llama",
                            block_count=30, n_head=9, n_head_kv=3,
                            meta={"base_model_id": base_id, "name": "tiny", "digest": "ab" * 8})
    merged = invoke("models", "merge", str(adapter))
    assert merged.exit_code == 0, merged.output
    out = dpl_home / "adapters" / "tiny-merged.gguf"
    assert out.is_file() and settings().models == {"tiny-merged": str(out.resolve())}
    assert "--model tiny-merged" in " ".join(merged.output.split())

    assert invoke("split", *SPLIT, "--db", str(dev_db)).exit_code == 0
    user = held_out_user(dev_db)
    gen = invoke("generate", user, "--method", "profile", "--model", "tiny-merged", "--k", "2",
                 "--max-tokens", "16", "--db", str(dev_db),
                 "--json")
    assert gen.exit_code == 0, gen.output
    assert json.loads(gen.output)["model_id"] == model_id_for(out)
    with UserStore(dev_db) as store:
        generation = store.generations(user)[-1]
        made_by = {row["model_id"] for row in store.db["artifacts"].rows_where(
            "kind = 'profile'")}
    assert generation.model_id == model_id_for(out)
    assert generation.params["analyst"] == base_id and made_by == {base_id}

    # a merged model whose base file has gone: named, with the remedy, before any writing
    gone = tmp_path / "gone" / default_gguf_path().name
    gone.parent.mkdir()
    shutil.copyfile(default_gguf_path(), gone)
    made = invoke("models", "merge", str(adapter), "--name", "orphan", "--model", str(gone))
    assert made.exit_code == 0, made.output
    gone.unlink()
    one_line_error(invoke("generate", user, "--method", "profile", "--model", "orphan", "--k",
                          "2", "--max-tokens", "8", "--db", str(dev_db)),
                   "no longer at", "dpl models merge")

    one_line_error(invoke("models", "merge", str(adapter), "--model",
                          str(tmp_path / "nope.gguf")), "nope.gguf")
    one_line_error(invoke("models", "merge", str(default_gguf_path())), "not a LoRA adapter")
    one_line_error(invoke("models", "merge", "nothing-here"), "No adapter named")
    assert set(settings().models) == {"tiny-merged", "orphan"}
