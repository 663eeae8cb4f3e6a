"""dpl's sampler (models.sampling) against top-p computed the way llama.cpp computes it, by
sorting the whole vocabulary: the same set of tokens, and draws from the same distribution."""

from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np
import pytest

from models import SamplingParams
from models.sampling import BLOCK, REDRAWS, _Weights, draw, in_nucleus, nucleus

WARM = SamplingParams(temperature=0.8, top_p=0.95)


def reference_nucleus(logits: np.ndarray, top_p: float) -> list[int]:
    """top-p as llama.cpp computes it: the whole vocabulary sorted, kept until the sum >= p."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    kept, total = [], 0.0
    for token in order:
        kept.append(int(token))
        total += probs[token]
        if total >= top_p:
            break
    return kept


def reference_distribution(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """What llama.cpp's chain draws from: the top-p set, then the temperature, renormalised."""
    kept = reference_nucleus(logits, params.top_p)
    weights = np.exp((logits[kept].astype(np.float64) - logits.max()) / params.temperature)
    probs = np.zeros(len(logits))
    probs[kept] = weights / weights.sum()
    return probs


def model_like_logits(seed: int, vocab: int = 49_152, spread: float = 6.0) -> np.ndarray:
    """A peaked distribution over a real model's vocabulary size."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(vocab) * spread).astype(np.float32)


@pytest.mark.parametrize("spread", [0.5, 2.0, 6.0], ids=["flat", "medium", "peaked"])
def test_the_top_p_set_is_llama_cpps_without_sorting_the_vocabulary(spread: float) -> None:
    logits = model_like_logits(0, spread=spread)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    for top_p in (0.5, 0.95, 0.999):
        ours, reference = nucleus(logits, top_p).tolist(), reference_nucleus(logits, top_p)
        if spread == 6.0:  # a real model's peaked distribution: the very same list
            assert ours == reference
        # flat ones (thousands of tokens) differ only where rounding decides a tie or the
        # last of thousands of tiny probabilities: a negligible mass
        differ = list(set(ours) ^ set(reference))
        assert probs[differ].sum() < 1e-4, (len(ours), len(reference))
        assert abs(probs[ours].sum() - probs[reference].sum()) < 1e-4


def test_membership_of_the_top_p_set_is_decided_without_sorting() -> None:
    logits = model_like_logits(1)
    kept = set(reference_nucleus(logits, 0.95))
    shifted = logits - logits.max()
    target = 0.95 * float(np.exp(shifted).sum(dtype=np.float64))
    ranked = np.argsort(-logits, kind="stable")
    # every kept token, and the first hundred beyond the set
    for token in ranked[: len(kept) + 100]:
        assert in_nucleus(shifted, int(token), target) == (int(token) in kept), int(token)


def test_tied_tokens_enter_the_top_p_set_by_lower_id_first() -> None:
    logits = np.array([0.0, 1.0, 1.0, 1.0, -5.0], dtype=np.float32)
    # the three tied tokens hold most of the mass: top-p 0.5 needs two of them
    assert reference_nucleus(logits, 0.5) == [1, 2]
    shifted = logits - logits.max()
    target = 0.5 * float(np.exp(shifted).sum())
    assert [in_nucleus(shifted, t, target) for t in range(5)] == [False, True, True, False, False]


def test_a_draw_follows_top_p_and_temperature() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    rng = np.random.default_rng(1)
    params = SamplingParams(temperature=1.0, top_p=0.9)
    counts = np.bincount([draw(logits, params, rng) for _ in range(20_000)], minlength=4)
    # top-p 0.9 keeps 0.5, 0.3 and 0.15 (the sum passes 0.9 with the third), renormalised
    assert counts[3] == 0
    assert np.allclose(counts[:3] / counts.sum(), np.array([0.5, 0.3, 0.15]) / 0.95, atol=0.015)
    assert draw(logits, replace(params, temperature=0.0), rng) == 0
    cold = [draw(logits, replace(params, temperature=0.1), rng) for _ in range(2_000)]
    assert cold.count(0) > 1_900  # a low temperature sharpens what is left


@pytest.mark.parametrize(
    "params",
    [WARM, SamplingParams(temperature=2.5, top_p=0.3), SamplingParams(temperature=0.8, top_p=1.0)],
    ids=["dpl's settings", "mostly redrawn", "no top-p"],
)
def test_draws_over_a_model_sized_vocabulary_follow_llama_cpps_distribution(
    params: SamplingParams,
) -> None:
    """Over 49k tokens, the frequencies of 6,000 draws against the exact probabilities: total
    variation within what sampling noise gives (the rng is seeded, so the test is fixed)."""
    logits = model_like_logits(2, spread=2.0)
    expected = reference_distribution(logits, params)
    rng = np.random.default_rng(3)
    draws = [draw(logits, params, rng) for _ in range(6_000)]
    assert all(expected[t] > 0 for t in draws), "a token outside the top-p set was drawn"
    counts = np.bincount(draws, minlength=len(logits)) / len(draws)
    # compare on the tokens that carry the mass (the tail's noise would swamp the distance)
    heavy = np.argsort(-expected)[:20]
    noise = 4 * np.sqrt(expected[heavy] * (1 - expected[heavy]) / len(draws))
    assert np.all(np.abs(counts[heavy] - expected[heavy]) < noise + 1e-3)


def test_after_too_many_refusals_the_set_is_sorted_and_drawn_from(monkeypatch) -> None:
    """A temperature far above 1 puts most of the scaled mass outside a small top-p set, so
    candidates are refused ``REDRAWS`` times and the sorted set is drawn from instead."""
    import models.sampling as sampling

    sorted_calls = []
    real_nucleus = sampling.nucleus

    def counting_nucleus(logits, top_p):
        sorted_calls.append(top_p)
        return real_nucleus(logits, top_p)

    monkeypatch.setattr(sampling, "nucleus", counting_nucleus)
    logits = model_like_logits(4, spread=1.0)
    params = SamplingParams(temperature=50.0, top_p=0.01)
    kept = set(reference_nucleus(logits, params.top_p))
    rng = np.random.default_rng(5)
    draws = [draw(logits, params, rng) for _ in range(50)]
    assert set(draws) <= kept
    assert sorted_calls, f"never fell back after {REDRAWS} refusals"


def test_a_token_is_picked_where_its_share_of_the_cumulative_weight_lies() -> None:
    """Blocks of weights, a vocabulary that is no multiple of a block, tokens without weight:
    the token picked is the one a cumulative sum over the whole vocabulary points at."""
    rng = np.random.default_rng(3)
    weights = rng.exponential(size=3 * BLOCK + 17) * (rng.random(3 * BLOCK + 17) < 0.6)
    weights[BLOCK : 2 * BLOCK] = 0.0  # a whole block without weight
    cumulative = np.cumsum(weights)
    picker = _Weights(weights)
    for u in [0.0, 1e-12, 0.25, 0.5, 0.999999, *rng.random(2000)]:
        expected = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
        assert picker.pick(u) == expected, u
    assert weights[[picker.pick(u) for u in rng.random(500)]].min() > 0


def test_the_same_seed_gives_the_same_draws() -> None:
    logits = model_like_logits(6, spread=2.0)

    def fifty_draws(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [draw(logits, WARM, rng) for _ in range(50)]

    assert fifty_draws(7) == fifty_draws(7)
    assert len(set(fifty_draws(7))) > 5


def test_a_refused_token_is_replaced_from_the_top_p_set_as_the_grammar_allows(
    bundled_generator,
) -> None:
    """After the grammar refuses a drawn token, the next comes from the top-p set's tokens it
    allows, in proportion to their weights at the temperature: the model's top-p distribution
    conditioned on the grammar (real grammar, real vocabulary)."""
    from models.sampling import Sampler

    vocab = bundled_generator.vocab
    allowed = {t for t in range(vocab.size) if vocab.piece(t) and b"yes".startswith(vocab.piece(t))}
    allowed |= {t for t in range(vocab.size) if vocab.piece(t) and b"no".startswith(vocab.piece(t))}
    likelier, other = sorted(allowed)[:2]  # two tokens the grammar allows first
    refused = list(range(200, 210))
    assert not allowed & set(refused)
    logits = np.full(vocab.size, -20.0, dtype=np.float32)
    logits[refused] = 0.9  # most of the top-p set, none of it allowed
    logits[likelier], logits[other] = 2.0, 1.0
    grammar = 'root ::= "yes" | "no"'

    sampler = Sampler(vocab, WARM, grammar, seed=11)
    draws = [sampler._allowed_in_nucleus(logits) for _ in range(3000)]
    assert set(draws) == {likelier, other}
    share = draws.count(likelier) / len(draws)
    expected = 1 / (1 + np.exp(-1.0 / WARM.temperature))  # one logit apart, temperature 0.8
    assert abs(share - expected) < 0.03, (share, expected)

    greedy = Sampler(vocab, replace(WARM, temperature=0.0), grammar, seed=11)
    logits[refused] = 3.0  # the most likely tokens are refused; likelier is the best allowed
    assert greedy._allowed_in_nucleus(logits) == likelier

    crowd = np.arange(1000, 2000)  # a top-p set larger than any asked about before
    logits[:] = -20.0
    logits[crowd], logits[likelier] = 0.5, 0.6
    assert greedy._allowed_in_nucleus(logits) == likelier
    assert list(greedy._allowed(np.array([refused[0], likelier]), logits)) == [likelier]

    logits[[likelier, other]] = -15.0  # now outside the top-p set: nothing there is allowed
    assert sampler._allowed_in_nucleus(logits) is None
    sampler.free()
    greedy.free()


class _GivenLogits:
    """llama_cpp, except that a context's logits are the ones given."""

    def __init__(self, logits: np.ndarray) -> None:
        import llama_cpp

        self._lib, self._logits = llama_cpp, logits

    def __getattr__(self, name: str):
        return getattr(self._lib, name)

    def llama_get_logits_ith(self, ctx, index):
        return self._logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def test_the_grammar_goes_over_the_vocabulary_only_when_it_allows_nothing_in_the_top_p_set(
    bundled_generator,
) -> None:
    """Each refusal is counted, and so is each one the top-p set could not replace: only then
    is the grammar applied to the whole vocabulary (here: the real context's last logits)."""
    from models.sampling import Sampler

    vocab, llm = bundled_generator.vocab, bundled_generator.llm
    llm.reset()
    llm.eval(llm.tokenize(b"Is the guitar good? Answer yes or no:"))  # real logits at -1
    starts = {t for t in range(vocab.size) if vocab.piece(t) and b"yes".startswith(vocab.piece(t))}
    allowed = sorted(starts)[0]
    logits = np.full(vocab.size, -20.0, dtype=np.float32)
    logits[200:210] = 3.0  # the whole top-p set, none of it allowed

    sampler = Sampler(vocab, WARM, 'root ::= "yes"', seed=5)
    sampler._lib = _GivenLogits(logits)
    token = sampler.sample(llm.ctx, -1)
    assert token in starts
    assert (sampler.refused, sampler.fell_back) == (1, 1)
    sampler.free()

    logits[allowed] = 2.5  # now in the top-p set, below the refused tokens
    sampler = Sampler(vocab, WARM, 'root ::= "yes"', seed=5)
    sampler._lib = _GivenLogits(logits)
    taken = [sampler.sample(llm.ctx, -1)]
    while sampler.refused == 0:  # until a refused token is drawn first
        sampler.free()
        sampler = Sampler(vocab, WARM, 'root ::= "yes"', seed=5 + len(taken))
        sampler._lib = _GivenLogits(logits)
        taken.append(sampler.sample(llm.ctx, -1))
    assert taken[-1] == allowed
    assert (sampler.refused, sampler.fell_back) == (1, 0)
    sampler.free()
