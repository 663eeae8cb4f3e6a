"""Choosing and rendering `dpl tune`'s training examples, on the real dev data with scripted
models (fast). The real training run, export and use are in tests/models/test_adapters.py and
tests/cli/test_tune_cli.py."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dpl_engine import Engine, EngineConfig, EngineError
from dpl_engine.tuning import task as tune
from models import ChatMessage
from tests.engine.fakes import FakeEmbedder, FakeGenerator


class FakeStudent(FakeGenerator):
    """A scripted model that also tokenizes (one id per word), as a student must."""

    end_of_turn_id = 2

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        return [len(w) for m in messages for w in m["content"].split()]

    def text_token_ids(self, text: str) -> list[int]:
        return [len(w) + 100 for w in text.split()]


def words(text: str, n: int = 8) -> str:
    return " ".join(text.split()[:n])


def engine(store, split, student, analyst=None) -> Engine:
    return Engine(store, student, FakeEmbedder(), EngineConfig(m=2, k=3),
                  exclude_reviews=split.hidden_reviews("val"), analyst=analyst)


def test_targets_are_profile_reviews_of_users_outside_the_held_out_ones(dev):
    _, split = dev
    config = tune.TuneConfig(examples=50, per_user=2, holdout_users=10)
    targets = tune.training_targets(split, config)
    assert len(targets) == 50
    held = set(tune.held_out_users(split, 10))
    assert len(held) == 10
    by_user = {u.user_id: u for u in split.users}
    for user_id, item_id in targets:
        user = by_user[user_id]
        assert user_id not in held
        assert item_id in user.profile and item_id not in (user.val, user.test)
        assert item_id != user.profile[0]  # the oldest review has nothing before it
    # at most per_user targets each, the latest profile reviews first
    per = {}
    for user_id, item_id in targets:
        per.setdefault(user_id, []).append(item_id)
    for user_id, items in per.items():
        assert items == list(reversed(by_user[user_id].profile))[: len(items)]
        assert len(items) <= 2
    # the held-out users are the first of dpl eval's order
    from dpl_engine.evaluation.runner import EvalConfig, Evaluation

    runner = Evaluation(dev[0], split, FakeGenerator(), FakeEmbedder(), EvalConfig(users=10))
    assert set(runner.selected_users()) == held


def test_no_validation_or_test_text_appears_in_any_training_example(dev):
    store, split = dev
    student = FakeStudent()
    config = tune.TuneConfig(method="dpl", examples=12, per_user=3, holdout_users=5,
                             engine=EngineConfig(m=2, k=3), max_tokens=4096)
    found = tune.build_examples(engine(store, split, student), split, config)
    assert len(found.examples) == 12 and found.llm_calls > 0
    assert student.calls["differences"] > 0 and student.calls["profile"] > 0
    texts = [
        " ".join((" ".join(m["content"] for m in e.messages) + " " + e.completion).split())
        for e in found.examples
    ]
    hidden = [store.review(u.user_id, i).text for u in split.users for i in (u.val, u.test)]
    leaked = [t for t in hidden if any(words(t) in x for x in texts)]
    assert leaked == []
    # The check sees review text: each completion is its target's own review.
    for example in found.examples:
        assert example.completion == store.review(example.user_id, example.item_id).text
        assert words(example.completion) not in " ".join(
            " ".join(m["content"] for m in example.messages).split()
        )


def test_examples_are_the_prompts_the_method_serves(dev):
    store, split = dev
    student = FakeStudent()
    config = tune.TuneConfig(method="rag", examples=3, holdout_users=5, max_tokens=4096,
                             engine=EngineConfig(m=2, k=3))
    eng = engine(store, split, student)
    found = tune.build_examples(eng, split, config)
    for example in found.examples:
        real = store.review(example.user_id, example.item_id)
        target = eng.target(example.user_id, example.item_id, rating=real.rating,
                            title=real.title)
        result = eng.generate(target, "rag")
        assert list(result.messages) == list(example.messages)
        ids = example.tokens
        assert list(ids.prompt_ids) == student.prompt_token_ids(example.messages)
        assert ids.completion_ids[-1] == FakeStudent.end_of_turn_id
        assert list(ids.completion_ids[:-1]) == student.text_token_ids(real.text)


def test_the_teacher_reads_the_users_and_the_student_only_renders(dev):
    store, split = dev
    student, teacher = FakeStudent(model_id="student"), FakeGenerator(model_id="teacher")
    config = tune.TuneConfig(method="dpl", examples=4, holdout_users=5, max_tokens=4096,
                             engine=EngineConfig(m=2, k=3))
    found = tune.build_examples(engine(store, split, student, teacher), split, config)
    assert teacher.calls["differences"] > 0 and teacher.calls["profile"] == 4
    assert student.total_calls == 0
    assert all("Writes short, upbeat reviews" in e.messages[-1]["content"]
               for e in found.examples)


def test_a_long_prompt_is_skipped_and_a_long_review_is_cut(dev):
    store, split = dev
    student = FakeStudent()
    config = tune.TuneConfig(method="rag", examples=8, holdout_users=5, max_tokens=8192,
                             min_completion=32, engine=EngineConfig(m=2, k=3))
    eng = engine(store, split, student)
    whole = tune.build_examples(eng, split, config)
    lengths = sorted(len(e.tokens.prompt_ids) for e in whole.examples)
    limit = lengths[len(lengths) // 2] + 40  # room for about half of them
    from dataclasses import replace

    found = tune.build_examples(eng, split, replace(config, max_tokens=limit))
    assert found.examples and found.skipped
    assert len(found.examples) + len(found.skipped) == len(whole.examples)
    assert all("longer than --max-tokens" in why for why in found.skipped)
    for e in found.examples:
        assert len(e.tokens.prompt_ids) + len(e.tokens.completion_ids) <= limit
    assert any(len(e.tokens.completion_ids) < len(w.tokens.completion_ids)
               for e in found.examples for w in whole.examples
               if (w.user_id, w.item_id) == (e.user_id, e.item_id))


def test_a_split_that_leaves_no_training_user_is_refused_in_one_line(dev):
    store, split = dev
    config = tune.TuneConfig(holdout_users=len(split.users))
    with pytest.raises(EngineError, match="leaves no training examples") as err:
        tune.build_examples(engine(store, split, FakeStudent()), split, config)
    assert "\n" not in str(err.value)


def test_the_identity_changes_with_what_makes_the_adapter(dev):
    _, split = dev
    config = tune.TuneConfig()
    same = tune.identity(config, split, "base:1", "base:1")
    assert same == tune.identity(tune.TuneConfig(), split, "base:1", "base:1")
    from dataclasses import replace

    from models.training import LoraOptions

    for other in (
        tune.identity(replace(config, method="rag"), split, "base:1", "base:1"),
        tune.identity(config, split, "base:2", "base:2"),
        tune.identity(config, split, "base:1", "teacher:9"),
        tune.identity(replace(config, lora=LoraOptions(rank=8)), split, "base:1", "base:1"),
        tune.identity(replace(config, engine=EngineConfig(k=4)), split, "base:1", "base:1"),
    ):
        assert other != same


def test_bad_options_are_named(dev):
    from models.training import LoraOptions, TrainingError

    with pytest.raises(EngineError, match="--examples must be at least 1"):
        tune.TuneConfig(examples=0).check()
    with pytest.raises(TrainingError, match="--rank must be at least 1"):
        tune.TuneConfig(lora=LoraOptions(rank=0)).check()
    with pytest.raises(EngineError, match="Unknown method"):
        tune.TuneConfig(method="other").check()  # type: ignore[arg-type]


def test_with_a_contrastive_weight_each_example_carries_other_training_users_reviews(dev):
    from models.training import LoraOptions

    store, split = dev
    student = FakeStudent()
    config = tune.TuneConfig(method="rag", examples=16, holdout_users=10, max_tokens=8192,
                             negatives=2, engine=EngineConfig(m=2, k=3),
                             lora=LoraOptions(contrast=1.0))
    found = tune.build_examples(engine(store, split, student), split, config)
    held = set(tune.held_out_users(split, 10))
    profile = {(u.user_id, i) for u in split.users for i in u.profile}
    hidden = {(u.user_id, i) for u in split.users for i in (u.val, u.test)}
    counted = 0
    for e in found.examples:
        assert len(e.negatives) == len(e.tokens.negatives) <= 2
        users = [u for u, _ in e.negatives]
        assert len(set(users)) == len(users) and e.user_id not in users
        for (other, text), ids in zip(e.negatives, e.tokens.negatives, strict=True):
            # a training user's profile review of the same item: never a held-out user's,
            # never a validation or test review
            assert other not in held and (other, e.item_id) in profile
            assert (other, e.item_id) not in hidden
            assert text == store.review(other, e.item_id).text
            assert list(ids) == student.text_token_ids(text) + [FakeStudent.end_of_turn_id]
        counted += not e.negatives
        # every other training user with a profile review of the item was a candidate
        pool = [u.user_id for u in split.users if u.user_id not in held
                and u.user_id != e.user_id and e.item_id in u.profile]
        assert len(e.negatives) == min(2, len(pool))
    assert found.without_negatives == counted
    assert sum(len(e.negatives) for e in found.examples) > len(found.examples)
    # the same seed picks the same reviews; without a weight none are picked
    again = tune.build_examples(engine(store, split, student), split, config)
    assert [e.negatives for e in again.examples] == [e.negatives for e in found.examples]
    from dataclasses import replace

    plain = tune.build_examples(engine(store, split, student), split,
                                replace(config, lora=LoraOptions()))
    assert all(e.negatives == () and e.tokens.negatives == () for e in plain.examples)
    assert plain.without_negatives == 0


def test_the_contrastive_options_join_the_identity_only_when_used(dev):
    from dataclasses import replace

    from models.training import LoraOptions

    _, split = dev
    plain = tune.identity(tune.TuneConfig(), split, "base:1", "base:1")
    # adapters trained before the option existed keep their identity
    assert "contrast" not in plain["lora"] and "negatives" not in plain
    assert plain == tune.identity(tune.TuneConfig(negatives=3), split, "base:1", "base:1")
    one = tune.identity(tune.TuneConfig(lora=LoraOptions(contrast=1.0)), split, "b", "b")
    assert one["lora"]["contrast"] == 1.0 and one["negatives"] == 1
    two = tune.identity(tune.TuneConfig(lora=LoraOptions(contrast=1.0), negatives=2), split,
                        "b", "b")
    assert two != one
    with pytest.raises(EngineError, match="--negatives must be at most 8"):
        replace(tune.TuneConfig(), negatives=9).check()
    with pytest.raises(EngineError, match="--negatives must be at least 1"):
        replace(tune.TuneConfig(), negatives=0).check()
