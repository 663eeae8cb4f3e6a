"""Per-user adapters (``dpl tune --user``): which reviews they learn from, where they live,
and the keep-or-drop rule, on the real dev data; the training and the stacking in llama.cpp
are real in the slow tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dpl_engine import Engine, EngineConfig, EngineError
from dpl_engine.tuning import personal
from models.adapters import AdapterError, write_adapter
from models.base import SamplingParams
from models.training import LoraOptions
from tests.engine.fakes import FakeEmbedder


def test_a_user_learns_from_their_own_profile_reviews_latest_first(dev):
    _, split = dev
    user = max(split.users, key=lambda u: len(u.profile))
    config = personal.PersonalConfig(user_id=user.user_id, examples=5)
    items = personal.user_targets(split, config)
    assert items == list(reversed(user.profile))[:5]
    assert user.profile[0] not in items  # the earliest has no history before it
    assert user.val not in items and user.test not in items
    short = replace(config, examples=100)
    assert personal.user_targets(split, short) == list(reversed(user.profile[1:]))


def test_a_user_outside_the_split_or_with_too_short_a_history_is_named(dev):
    _, split = dev
    with pytest.raises(EngineError, match="'nobody' is not in this split"):
        personal.user_targets(split, personal.PersonalConfig(user_id="nobody"))
    one = replace(split.users[0], profile=split.users[0].profile[:1])
    cut = replace(split, users=(one,))
    with pytest.raises(EngineError, match="needs at least two") as err:
        personal.user_targets(cut, personal.PersonalConfig(user_id=one.user_id))
    assert "\n" not in str(err.value)


def test_files_live_beside_the_task_adapter_and_odd_ids_get_safe_names(tmp_path):
    task = tmp_path / "adapters" / "task-dpl.gguf"
    assert personal.users_folder(task) == tmp_path / "adapters" / "task-dpl.users"
    assert personal.personal_path(task, "A2EZWZ8MBEDOLN").name == "A2EZWZ8MBEDOLN.gguf"
    odd = personal.file_stem("a/b c")
    assert odd.startswith("a_b_c-") and personal.file_stem("a/b d") != odd


def _adapter(path: Path, meta: dict) -> Path:
    pairs = {"model.layers.0.self_attn.q_proj": (np.ones((2, 576), np.float32),
                                                 np.zeros((576, 2), np.float32))}
    return write_adapter(path, pairs, alpha=4.0, architecture="llama", block_count=30,
                         n_head=9, n_head_kv=3, meta=meta)


def test_an_adapter_made_on_another_version_of_the_task_adapter_is_not_used(tmp_path):
    task = tmp_path / "task.gguf"
    path = personal.personal_path(task, "U1")
    _adapter(path, {"name": "task/U1", "on": "task@aaaa", "user_id": "U1"})
    assert personal.find_personal(task, "task@aaaa", "U1") == path
    assert personal.find_personal(task, "task@bbbb", "U1") is None
    assert personal.find_personal(task, "task@aaaa", "U2") is None
    path.write_bytes(path.read_bytes()[:40])  # cut short: named, with the remedy
    with pytest.raises(AdapterError, match="cannot be read.*--no-personal") as err:
        personal.find_personal(task, "task@aaaa", "U1")
    assert "\n" not in str(err.value)


def test_verdicts_survive_a_damaged_file(tmp_path):
    folder = tmp_path / "task.users"
    folder.mkdir()
    (folder / personal.VERDICTS).write_text("{not json")
    assert personal.read_verdicts(folder) == {}
    (folder / personal.VERDICTS).write_text(json.dumps({"U": {"user_id": "U"}}))
    assert personal.read_verdicts(folder) == {}  # a row missing its fields is skipped


@pytest.mark.slow
def test_kept_only_when_better_and_then_used_for_that_user_alone(
    dev, bundled_generator, tmp_path, monkeypatch
):
    """A real tiny per-user run over a real task adapter: the verdict decides whether the
    file stays, the same run is not trained twice, and an engine given the kept adapter
    writes that user's reviews (and only theirs) with both adapters."""
    import torch

    from models import training
    from models.registry import default_gguf_path

    store, split = dev
    base, shape = training.load_base(default_gguf_path(), "cpu")
    torch.manual_seed(0)
    task_model = training.with_lora(base, LoraOptions(rank=2, alpha=4.0), random_b=True)
    task_path = write_adapter(
        tmp_path / "adapters" / "task-rag.gguf", training.lora_pairs(task_model), alpha=4.0,
        architecture=shape.architecture, block_count=shape.block_count, n_head=shape.n_head,
        n_head_kv=shape.n_head_kv,
        meta={"name": "task-rag", "digest": "feedfacecafe0", "method": "rag",
              "base_model_id": bundled_generator.model_id},
    )
    writer = bundled_generator.with_adapter(task_path)
    user = max(split.users, key=lambda u: len(u.profile))
    config = personal.PersonalConfig(
        user_id=user.user_id, method="rag", examples=2, max_tokens=1024,
        engine=EngineConfig(k=2, max_review_chars=300, generation=SamplingParams(max_tokens=8)),
        lora=LoraOptions(rank=2, alpha=4.0, epochs=1, learning_rate=1e-3),
    )
    engine = Engine(store, writer, FakeEmbedder(), config.engine,
                    exclude_reviews=split.hidden_reviews("val"))
    scores = {"value": ([0.10, 0.12], [0.20, 0.18])}  # (task alone, with the user's own)
    monkeypatch.setattr(personal, "validate", lambda *a, **k: scores["value"])

    verdict, trained = personal.train_personal(engine, split, config, task_path=task_path,
                                               base_path=default_gguf_path())
    assert trained and verdict.kept and verdict.examples == 2
    assert verdict.task_rouge1 == pytest.approx(0.11) and verdict.gain > 0
    kept = personal.personal_path(task_path, user.user_id)
    assert Path(verdict.path) == kept and kept.exists()
    assert not list(kept.parent.glob("*.candidate.gguf"))
    assert personal.read_verdicts(kept.parent)[user.user_id] == verdict
    again, trained_again = personal.train_personal(engine, split, config, task_path=task_path,
                                                   base_path=default_gguf_path())
    assert not trained_again and again == verdict

    found = personal.find_personal(task_path, writer.adapter.adapter_id, user.user_id)
    assert found == kept
    own = writer.with_adapter(found)
    using = Engine(store, writer, FakeEmbedder(), config.engine,
                   exclude_reviews=split.hidden_reviews("val"),
                   personal=lambda u: own if u == user.user_id else None)
    mine = using.generate(using.target(user.user_id, user.val, rating=4.0, title=""), "rag")
    other = next(u for u in split.users if u.user_id != user.user_id)
    theirs = using.generate(using.target(other.user_id, other.val, rating=4.0, title=""),
                            "rag")
    assert mine.model_id == own.model_id and mine.model_id.startswith(writer.model_id + "+")
    assert theirs.model_id == writer.model_id
    stored = {g.id: g for g in store.generations(user.user_id, user.val)}
    assert stored[mine.generation_id].model_id == own.model_id

    # another run that does not measure better removes the file and says so
    scores["value"] = ([0.20, 0.20], [0.15, 0.25])  # equal on average: not better
    worse = replace(config, examples=3)
    dropped, trained = personal.train_personal(engine, split, worse, task_path=task_path,
                                               base_path=default_gguf_path())
    assert trained and not dropped.kept and not kept.exists()
    assert personal.find_personal(task_path, writer.adapter.adapter_id, user.user_id) is None
    assert personal.read_verdicts(kept.parent)[user.user_id].kept is False
