"""LoRA adapters for real: PEFT over transformers on the bundled GGUF, exported as a llama.cpp
adapter GGUF, applied by llama.cpp. The export is proven against the framework it came from:
the change an adapter makes to the next-token logits must be the same in both runtimes."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from models import adapters, training
from models.adapters import AdapterError, inspect_adapter, write_adapter
from models.errors import CorruptModelError
from models.training import LoraOptions, TrainingError, TrainingExample

pytestmark = pytest.mark.slow

PROMPTS = (
    "I bought this guitar strap last week and",
    "The sound quality of these strings is",
    "Review of a capo: it clamps",
)
MIN_CORRELATION = 0.96
"""Measured on the bundled model with random rank-8 adapters (torch seeds 0-4): 0.983-0.996
when the export is right; 0.83-0.94 with the query/key rows left in transformers' order and
0.55-0.75 with alpha missing. (A smaller random adapter drowns in the runtimes' different
rounding: its changes must be large for the comparison to see them.)"""
SLOPE = (0.8, 1.4)
"""The llama.cpp change regressed on the transformers change: 1.06-1.13 when the export is
right (changes this large are past the linear range), 0.24-0.40 with alpha missing."""


@pytest.fixture(scope="module")
def hf_base():
    from models.registry import default_gguf_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model, shape = training.load_base(default_gguf_path(), "cpu", threads=None)
    return model, shape


def fresh_lora(hf_base, options: LoraOptions, *, random_b: bool = False, seed: int = 0):
    import torch

    model, shape = hf_base
    torch.manual_seed(seed)  # the random adapter, the same in every run
    return training.with_lora(copy.deepcopy(model), options, random_b=random_b), shape


def export(path: Path, peft_model, shape, options: LoraOptions, base_id: str, **kw) -> Path:
    pairs = kw.pop("pairs", None) or training.lora_pairs(peft_model)
    return write_adapter(
        path, pairs, alpha=kw.pop("alpha", options.alpha), architecture=shape.architecture,
        block_count=shape.block_count, n_head=shape.n_head, n_head_kv=shape.n_head_kv,
        meta={"base_model_id": base_id, "name": path.stem, "digest": "test" + path.stem,
              "options": {"rank": options.rank}},
    )


def agreement(peft_model, base_gen, adapted_gen) -> tuple[float, float]:
    """The worst correlation and slope, over PROMPTS, between the logit change the adapter
    causes in transformers (PEFT on against off) and in llama.cpp (with against without)."""
    correlations, slopes = [], []
    for text in PROMPTS:
        ids = base_gen.text_token_ids(text)
        with peft_model.disable_adapter():
            h0 = training.next_token_logits(peft_model, ids)
        h1 = training.next_token_logits(peft_model, ids)
        l0 = np.array(base_gen.next_token_logits(ids))
        l1 = np.array(adapted_gen.next_token_logits(ids))
        dh, dl = h1 - h0, l1 - l0
        correlations.append(float(np.corrcoef(dh, dl)[0, 1]))
        slopes.append(float(np.dot(dh, dl) / np.dot(dh, dh)))
    worst_slope = max(slopes, key=lambda s: abs(s - 1.0))
    return min(correlations), worst_slope


def passes(corr: float, slope: float) -> bool:
    return corr >= MIN_CORRELATION and SLOPE[0] <= slope <= SLOPE[1]


OPTIONS = LoraOptions(rank=8, alpha=16.0, dropout=0.0)


def test_the_exported_adapter_changes_llama_cpp_as_it_changes_transformers(
    hf_base, bundled_generator, tmp_path
):
    peft_model, shape = fresh_lora(hf_base, OPTIONS, random_b=True)
    path = export(tmp_path / "ok.gguf", peft_model, shape, OPTIONS, bundled_generator.model_id)
    info = inspect_adapter(path)
    assert info.alpha == 16.0 and info.tensors == 2 * 7 * shape.block_count
    adapted = bundled_generator.with_adapter(path)
    corr, slope = agreement(peft_model, bundled_generator, adapted)
    assert passes(corr, slope), (corr, slope)


@pytest.mark.parametrize("fault", ["rows in transformers' order", "alpha missing"])
def test_a_wrong_export_fails_the_same_check(
    fault, hf_base, bundled_generator, tmp_path, monkeypatch
):
    peft_model, shape = fresh_lora(hf_base, OPTIONS, random_b=True)
    kw = {}
    if fault == "alpha missing":
        kw["alpha"] = 0.0  # llama.cpp then scales by 1 instead of alpha / rank
    else:
        monkeypatch.setattr(adapters, "ROPE_PERMUTED", frozenset())
    path = export(tmp_path / "bad.gguf", peft_model, shape, OPTIONS,
                  bundled_generator.model_id, **kw)
    adapted = bundled_generator.with_adapter(path)
    corr, slope = agreement(peft_model, bundled_generator, adapted)
    assert not passes(corr, slope), (fault, corr, slope)


def test_a_transposed_pair_is_refused_by_llama_cpp_with_a_readable_error(
    hf_base, bundled_generator, tmp_path
):
    peft_model, shape = fresh_lora(hf_base, OPTIONS, random_b=True)
    swapped = {m: (b.T.copy(), a.T.copy()) for m, (a, b) in
               training.lora_pairs(peft_model).items()}
    path = export(tmp_path / "swapped.gguf", peft_model, shape, OPTIONS,
                  bundled_generator.model_id, pairs=swapped)
    with pytest.raises(AdapterError, match="could not apply adapter") as err:
        bundled_generator.with_adapter(path)
    assert "\n" not in str(err.value)


def examples_for(gen) -> list[TrainingExample]:
    reviews = [
        ("Review this guitar tuner.", "Clips on tight and reads fast. Worth every penny."),
        ("Review these strings.", "Bright and loud for a week, then dull. Fine for the price."),
        ("Review this capo.", "Holds without buzz and does not knock the tuning out."),
    ]
    out = []
    for question, answer in reviews:
        prompt = gen.prompt_token_ids([{"role": "user", "content": question}])
        done = tuple(gen.text_token_ids(answer)) + (gen.end_of_turn_id,)
        out.append(TrainingExample(tuple(prompt), done))
    return out


def test_a_tiny_real_run_lowers_the_loss_and_changes_greedy_output(
    hf_base, bundled_generator, tmp_path
):
    from models.base import SamplingParams

    options = LoraOptions(rank=8, alpha=16.0, dropout=0.0, epochs=4, learning_rate=2e-3,
                          warmup=0.0)
    peft_model, shape = fresh_lora(hf_base, options)
    result = training.train(peft_model, examples_for(bundled_generator), options)
    assert result.steps == 12 and len(result.losses) == 12
    assert np.mean(result.losses[-3:]) < 0.7 * np.mean(result.losses[:3]), result.losses
    path = export(tmp_path / "tiny.gguf", peft_model, shape, options, bundled_generator.model_id)
    adapted = bundled_generator.with_adapter(path)
    assert adapted.model_id == f"{bundled_generator.model_id}+tiny@testtiny"
    messages = [{"role": "user", "content": "Review this guitar tuner."}]
    params = SamplingParams(temperature=0.0, max_tokens=24, seed=1)
    base_text, _ = bundled_generator.complete(messages, params)
    tuned_text, _ = adapted.complete(messages, params)
    assert tuned_text != base_text
    # it writes from what it learned of the tuner (the review it saw), not from scratch
    assert any(p in tuned_text for p in ("reads fast", "Worth every penny", "Clips on tight"))
    again, _ = bundled_generator.complete(messages, params)
    assert again == base_text  # the base view is untouched after the adapter's call


def test_an_interrupted_run_resumes_from_its_checkpoint(hf_base, bundled_generator, tmp_path):
    options = LoraOptions(rank=4, alpha=8.0, dropout=0.0, epochs=2, checkpoint_every=2)
    examples = examples_for(bundled_generator)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    peft_model, _ = fresh_lora(hf_base, options)
    steps = []

    def stop_after_three() -> bool:
        return len(steps) >= 3

    with pytest.raises(KeyboardInterrupt):
        training.train(peft_model, examples, options, checkpoint=checkpoint, identity="run-1",
                       on_step=steps.append, stop=stop_after_three)
    assert checkpoint.exists()
    fresh, _ = fresh_lora(hf_base, options)
    result = training.train(fresh, examples, options, checkpoint=checkpoint, identity="run-1")
    assert result.resumed_from == 3 and result.steps == 6 and len(result.losses) == 6
    # another identity never picks up this checkpoint
    other, _ = fresh_lora(hf_base, options)
    assert training.train(other, examples, options, checkpoint=checkpoint,
                          identity="run-2").resumed_from == 0


def test_bad_adapter_files_get_one_line_errors(bundled_generator, tmp_path):
    from models.registry import default_gguf_path

    with pytest.raises(AdapterError, match="not a LoRA adapter") as err:
        bundled_generator.with_adapter(default_gguf_path())
    assert "\n" not in str(err.value)

    good = write_adapter(
        tmp_path / "a.gguf",
        {"model.layers.0.self_attn.q_proj": (np.ones((2, 576), np.float32),
                                             np.zeros((576, 2), np.float32))},
        alpha=4.0, architecture="llama", block_count=30, n_head=9, n_head_kv=3,
        meta={"base_model_id": "other-model.gguf:123", "name": "a"},
    )
    with pytest.raises(AdapterError, match="other-model.gguf:123") as err:
        bundled_generator.with_adapter(good)
    assert bundled_generator.model_id in str(err.value)

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptModelError, match="truncated"):
        inspect_adapter(cut)

    text = tmp_path / "notes.txt"  # the remedy is an adapter's, not a model's conversion
    text.write_text("rank 16, alpha 32\n")
    with pytest.raises(AdapterError, match="not a GGUF file at all") as err:
        inspect_adapter(text)
    assert "convert_lora_to_gguf.py" in str(err.value) and "\n" not in str(err.value)


def test_a_batch_is_padded_and_only_completions_are_learned():
    import torch

    batch = [TrainingExample((5, 6, 7), (8, 9)), TrainingExample((1,), (2,))]
    ids, mask, labels, real = training._tensors(batch, torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7, 8, 9], [1, 2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert labels.tolist() == [[-100, -100, -100, 8, 9], [-100, 2, -100, -100, -100]]
    assert real == 7
    assert training.batch_size(LoraOptions(), "cpu") == 1
    assert training.batch_size(LoraOptions(), "cuda") == 8
    assert training.batch_size(LoraOptions(batch=3), "cuda") == 3
    assert [len(b) for b in training._order(5, 1.0, 0, 2)] == [2, 2, 1]


def test_batched_training_runs_and_learns(hf_base, bundled_generator):
    options = LoraOptions(rank=4, alpha=8.0, dropout=0.0, epochs=4, learning_rate=2e-3,
                          warmup=0.0, batch=3)
    peft_model, _ = fresh_lora(hf_base, options)
    result = training.train(peft_model, examples_for(bundled_generator), options)
    assert result.steps == 4 and result.losses[-1] < result.losses[0]


def test_an_adapter_file_reads_back_as_the_pairs_it_was_written_from(hf_base, tmp_path):
    peft_model, shape = fresh_lora(hf_base, OPTIONS, random_b=True, seed=3)
    pairs = training.lora_pairs(peft_model)
    path = export(tmp_path / "r.gguf", peft_model, shape, OPTIONS, "base")
    modules = [name for name, _ in hf_base[0].named_modules()]
    back = adapters.read_adapter(path, modules, architecture=shape.architecture,
                                 block_count=shape.block_count, n_head=shape.n_head,
                                 n_head_kv=shape.n_head_kv)
    assert sorted(back) == sorted(pairs)
    for module, (a, b) in pairs.items():
        assert np.array_equal(back[module][0], a) and np.array_equal(back[module][1], b), module
    # a module the base does not have is named, not silently dropped
    with pytest.raises(AdapterError, match="has no weight"):
        adapters.read_adapter(path, modules[:5], architecture=shape.architecture,
                              block_count=shape.block_count, n_head=shape.n_head,
                              n_head_kv=shape.n_head_kv)


def test_a_second_adapter_trained_over_a_merged_first_stacks_in_llama_cpp(
    hf_base, bundled_generator, tmp_path
):
    """A per-user adapter is trained over the base with the task adapter merged in;
    llama.cpp applies both to the unmerged base. The change both make together must agree
    with transformers' merged-plus-second model, as a single adapter's does."""
    model, shape = hf_base
    task_model, _ = fresh_lora(hf_base, OPTIONS, random_b=True, seed=1)
    task_path = export(tmp_path / "task.gguf", task_model, shape, OPTIONS,
                       bundled_generator.model_id)
    merged = copy.deepcopy(model)
    training.merge_pairs(merged, training.lora_pairs(task_model), OPTIONS.alpha)
    import torch

    torch.manual_seed(2)
    both = training.with_lora(merged, OPTIONS, random_b=True)
    user_path = export(tmp_path / "user.gguf", both, shape, OPTIONS, bundled_generator.model_id)
    stacked = bundled_generator.with_adapter(task_path).with_adapter(user_path)
    assert stacked.model_id == f"{bundled_generator.model_id}+task@testtask+user@testuser"
    assert [a.path for a in stacked.adapters] == [str(task_path), str(user_path)]
    correlations = []
    for text in PROMPTS:
        ids = bundled_generator.text_token_ids(text)
        h0 = training.next_token_logits(model, ids)  # the plain base, as llama.cpp's
        h1 = training.next_token_logits(both, ids)
        l0 = np.array(bundled_generator.next_token_logits(ids))
        l1 = np.array(stacked.next_token_logits(ids))
        correlations.append(float(np.corrcoef(h1 - h0, l1 - l0)[0, 1]))
    assert min(correlations) >= MIN_CORRELATION, correlations
    # and the task adapter alone is back once the stacked view is done
    task_only = bundled_generator.with_adapter(task_path)
    ids = bundled_generator.text_token_ids(PROMPTS[0])
    alone = np.array(task_only.next_token_logits(ids))
    assert not np.allclose(alone, np.array(stacked.next_token_logits(ids)))


MERGE_CORRELATION = 0.9
"""Measured with the random rank-8 adapter above (torch seed 0): a merged model's logit
change (against the base) correlates 0.993 with the change the same adapter makes at run
time when the merged weights are Q8_0, and 0.59 when they are rounded back to the base's
Q4_1 (the update is smaller than a 4-bit step). A trained rank-16 adapter gave 0.87-0.97
against 0.14-0.23 on these prompts."""


def merged_agreement(base_gen, adapted_gen, merged_gen) -> float:
    worst = 1.0
    for text in PROMPTS:
        ids = base_gen.text_token_ids(text)
        l0 = np.array(base_gen.next_token_logits(ids))
        run_time = np.array(adapted_gen.next_token_logits(ids)) - l0
        merged = np.array(merged_gen.next_token_logits(ids)) - l0
        worst = min(worst, float(np.corrcoef(run_time, merged)[0, 1]))
    return worst


@pytest.mark.parametrize("fault", [None, "rounded to the base's type"])
def test_a_merged_model_changes_the_logits_as_its_adapter_does_at_run_time(
    hf_base, bundled_generator, tmp_path, monkeypatch, fault
):
    import gguf

    from models.llama import load_generator
    from models.registry import default_gguf_path, inspect_gguf

    if fault:
        monkeypatch.setattr(adapters, "merged_type", lambda kind: kind)
    peft_model, shape = fresh_lora(hf_base, OPTIONS, random_b=True)
    path = export(tmp_path / "a.gguf", peft_model, shape, OPTIONS, bundled_generator.model_id)
    out = adapters.merge_adapter(default_gguf_path(), path, tmp_path / "merged.gguf")
    merged = load_generator(out)
    corr = merged_agreement(bundled_generator, bundled_generator.with_adapter(path), merged)
    if fault:
        assert corr < MERGE_CORRELATION, corr
        return
    assert corr >= MERGE_CORRELATION, corr
    record = adapters.merged_record(out)
    assert record["adapter_id"] == inspect_adapter(path).adapter_id
    assert record["base_model_id"] == bundled_generator.model_id
    assert adapters.merged_record(default_gguf_path()) is None
    info = inspect_gguf(out)
    # Most weights are adapted and now Q8_0: the base's Q4_1 file type would misname them.
    assert bundled_generator.gguf.quantization == "Q4_1"
    assert "general.file_type" not in info.metadata and info.quantization == "Q8_0"
    assert info.metadata["tokenizer.chat_template"] == (
        bundled_generator.gguf.metadata["tokenizer.chat_template"])
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(out)).tensors}
    base_types = {t.name: t.tensor_type for t in gguf.GGUFReader(
        str(default_gguf_path())).tensors}
    assert types.keys() == base_types.keys()
    adapted = {t.name.rpartition(".")[0] for t in gguf.GGUFReader(str(path)).tensors}
    for name, kind in types.items():
        want = gguf.GGMLQuantizationType.Q8_0 if name in adapted else base_types[name]
        assert kind == want, name


def two_users(gen) -> list[TrainingExample]:
    """One item, two users who wrote opposite reviews of it: each example's negative is the
    other user's review, so only the prompt can tell which review belongs."""
    users = [
        ("You love every piece of gear you buy.", "Best capo I have owned, I adore it!"),
        ("You find fault with most gear you buy.", "Cheap spring, it buzzes. Sent it back."),
    ]
    out = []
    for i, (persona, review) in enumerate(users):
        other = users[1 - i][1]
        prompt = gen.prompt_token_ids(
            [{"role": "user", "content": f"{persona} Review this capo."}])
        out.append(TrainingExample(
            tuple(prompt), tuple(gen.text_token_ids(review)) + (gen.end_of_turn_id,),
            (tuple(gen.text_token_ids(other)) + (gen.end_of_turn_id,),)))
    return out


def margin(model, examples) -> float:
    """Mean over the examples of own review's score minus the other's, under its prompt."""
    return float(np.mean([s[0] - s[1] for s in
                          (training.completion_scores(model, e) for e in examples)]))


def whole_graph_loss(model, batch, weight):
    """The step's loss with every sequence in one graph: what the two passes must equal."""
    import torch

    rows, groups = training._rows(batch)
    ids, mask, labels, _ = training._tensors(rows, torch.device("cpu"))
    sums, counts = training._row_nll(model, ids, mask, labels)
    first = [g[0] for g in groups]
    lm = sums[first].sum() / counts[first].sum()
    scores = -sums / counts
    term = torch.stack([-torch.log_softmax(scores[g], dim=0)[0]
                        for g in groups if len(g) > 1]).mean()
    return lm + weight * term, lm, term


def lora_grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def test_the_contrastive_step_gives_the_whole_losss_gradients_one_sequence_at_a_time(
    hf_base, bundled_generator
):
    from contextlib import nullcontext

    import torch

    examples = two_users(bundled_generator)
    # a step of three examples, one of them without negatives
    bare = TrainingExample(examples[0].prompt_ids, examples[1].completion_ids)
    batch = [examples[0], bare, examples[1]]
    peft_model, _ = fresh_lora(hf_base, OPTIONS, random_b=True)
    peft_model.train()
    total, lm, term = whole_graph_loss(peft_model, batch, 2.0)
    total.backward()
    expected = lora_grads(peft_model)
    peft_model.zero_grad(set_to_none=True)
    parts = training._contrastive_step(peft_model, batch, 2.0, torch.device("cpu"), nullcontext)
    got = lora_grads(peft_model)
    assert got.keys() == expected.keys() and len(got) > 0
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, rtol=1e-3, atol=1e-6), name
    assert parts.lm_loss == pytest.approx(float(lm.detach()), rel=1e-5)
    assert parts.contrast == pytest.approx(float(term.detach()), rel=1e-5)
    # the usual loss is transformers' own over the completions
    ids, mask, labels, _ = training._tensors(
        [TrainingExample(e.prompt_ids, e.completion_ids) for e in batch], torch.device("cpu"))
    with torch.no_grad():
        plain = float(peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    assert parts.lm_loss == pytest.approx(plain, rel=1e-4)
    scores = [training.completion_scores(peft_model, e) for e in examples]
    assert parts.own_first == [s[0] > s[1] for s in scores]
    assert parts.contrast == pytest.approx(
        float(np.mean([np.log1p(np.exp(s[1] - s[0])) for s in scores])), rel=1e-4)
    assert parts.tokens == sum(len(e.prompt_ids) + len(c) for e in batch
                               for c in (e.completion_ids, *e.negatives))


def test_the_contrastive_term_ranks_each_users_own_review_above_the_others(
    hf_base, bundled_generator
):
    examples = two_users(bundled_generator)
    peft_model, _ = fresh_lora(hf_base, OPTIONS)
    before = margin(peft_model, examples)
    trained = {}
    for weight in (0.0, 2.0):
        options = LoraOptions(rank=8, alpha=16.0, dropout=0.0, epochs=4, learning_rate=2e-3,
                              warmup=0.0, contrast=weight)
        model, _ = fresh_lora(hf_base, options)
        result = training.train(model, examples, options)
        trained[weight] = (margin(model, examples), result)
    plain_margin, plain = trained[0.0]
    contrast_margin, contrasted = trained[2.0]
    # without a weight the negatives are not even computed: the run is the plain one
    assert plain.contrast_losses == [] and plain.own_first == []
    assert "first_contrast_loss" not in plain.record()
    # with one, each user's own review moves above the other's under their prompt, further
    # than learning the reviews alone moves it
    assert len(contrasted.contrast_losses) == 8 and len(contrasted.own_first) == 8
    # (each pass covers both examples)
    assert np.mean(contrasted.contrast_losses[-2:]) < np.mean(contrasted.contrast_losses[:2])
    assert contrast_margin > plain_margin and contrast_margin > before + 0.5, (
        before, plain_margin, contrast_margin)
    record = contrasted.record()  # (8 steps: the early and late windows are the same run)
    assert record["first_contrast_loss"] == pytest.approx(np.mean(contrasted.contrast_losses),
                                                          abs=1e-4)
    assert record["own_first_late"] == pytest.approx(np.mean(contrasted.own_first), abs=1e-3)


def test_negatives_without_a_contrastive_weight_change_nothing(hf_base, bundled_generator):
    options = LoraOptions(rank=4, alpha=8.0, dropout=0.0, epochs=1, learning_rate=2e-3,
                          warmup=0.0)
    examples = two_users(bundled_generator)
    bare = [TrainingExample(e.prompt_ids, e.completion_ids) for e in examples]
    runs = []
    for given in (examples, bare):
        model, _ = fresh_lora(hf_base, options)
        runs.append(training.train(model, given, options).losses)
    assert runs[0] == runs[1]


def test_a_contrastive_weight_out_of_range_is_named():
    for bad in (-1.0, float("nan"), 1000.0):
        with pytest.raises(TrainingError, match="--contrast must be between 0"):
            LoraOptions(contrast=bad).check()
