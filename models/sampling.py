"""dpl's own sampler for llama.cpp: every token of every in-process generation is drawn here.

dpl samples the paper's way: top-p 0.95, then temperature 0.8, then a seeded draw, with no
top-k and no min-p (greedy at temperature 0). llama.cpp's top-p sampler then ranks the
vocabulary, at a cost that grows with the tokens top-p keeps: 0.9 ms per token on average
along a review and 3.5 ms where it keeps 794, for a 49k vocabulary on two CPU cores
(``benchmarks/sampler.py``); one decode step of a 7B model on a GPU takes about 3 ms, so
with llama-cpp-python's chain the decode ran at half speed there. ``draw`` takes the same
distribution without sorting, in about 0.1 ms here (0.27 ms for a 152k vocabulary):

* a candidate is drawn from the temperature-scaled distribution over the whole vocabulary
  (one pass of ``exp`` and a sum per block of ``BLOCK`` tokens: a block is picked, then a
  token within it, each by a short cumulative sum);
* it is kept when it belongs to the top-p set, i.e. when the tokens ranked above it hold less
  than ``top_p`` of the probability (one comparison over the vocabulary); otherwise another
  candidate is drawn. Rejecting the tokens outside the set leaves exactly the distribution
  over the set. At temperatures up to 1 the set holds at least ``top_p`` of the scaled
  probability too, so one draw in twenty is redrawn at most; after ``REDRAWS`` refusals
  the set is found by sorting (``nucleus``) and drawn from directly.

A JSON grammar is asked only about the drawn token. When it refuses it, the grammar is asked
about the rest of the top-p set at once (one call over those tokens, not the vocabulary) and a
token is drawn from the ones it allows, weighted as before: so every token comes from the
model's top-p distribution conditioned on the grammar, exactly what drawing again until the
grammar accepts would give. Only when the grammar allows nothing in the set is it applied to
the whole vocabulary (top-p then taken over what it allows). At temperature 0 the token is the
most likely one the grammar allows, as applying the grammar first picks it; above it, the
texts differ from llama-cpp-python's for a given seed, as every text above temperature 0 does:
dpl's draws use a random stream of their own.
"""

from __future__ import annotations

import codecs
import ctypes
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import SamplingParams
from .errors import ModelError

REDRAWS = 8
"""Candidates drawn before the top-p set is found by sorting instead."""

NUCLEUS_FIRST = 256
"""Candidates sorted first when the top-p set is found by sorting (the bundled model's median
top-p set along a review was 63 and 112 tokens in two runs of ``benchmarks/sampler.py``; more
are sorted only when these fall short)."""

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
"""llama.cpp's ``llama_token_data``, as numpy sees an array of them."""

BLOCK = 256
"""Tokens summed together when a candidate is picked: one cumulative sum over the whole
vocabulary costs more than the rest of a draw (numpy runs it element by element), one over
the block sums and one within a block cost little."""


class _Weights:
    """Weights over a vocabulary, summed per block so that a token can be picked in proportion
    to its weight without a cumulative sum over them all."""

    def __init__(self, weights: np.ndarray) -> None:
        self._weights = weights.astype(np.float64)
        self._cumulative = np.cumsum(
            np.add.reduceat(self._weights, np.arange(0, len(weights), BLOCK))
        )

    def pick(self, u: float) -> int:
        """The token where ``u`` (in [0, 1)) of the total weight is reached."""
        cumulative = self._cumulative
        target = u * float(cumulative[-1])
        block = min(int(np.searchsorted(cumulative, target, side="right")), len(cumulative) - 1)
        start = block * BLOCK
        weights = self._weights[start : start + BLOCK]
        before = float(cumulative[block - 1]) if block else 0.0
        index = int(np.searchsorted(np.cumsum(weights), target - before, side="right"))
        if index >= len(weights):  # rounding at the block's end: its last token with weight
            index = int(np.flatnonzero(weights)[-1])
        return start + index


def nucleus(logits: np.ndarray, top_p: float) -> np.ndarray:
    """The tokens top-p keeps, most probable first: the fewest whose probabilities (softmax of
    ``logits``) add up to at least ``top_p``, as llama.cpp's top-p sampler keeps them. Only the
    top candidates are sorted, more of them only when they do not reach ``top_p``."""
    weights = np.exp(logits - logits.max())
    target = top_p * float(weights.sum(dtype=np.float64))
    k = NUCLEUS_FIRST
    while True:
        if k >= len(weights):
            order = np.argsort(-weights, kind="stable")
            break
        top = np.argpartition(weights, -k)[-k:]
        order = top[np.argsort(-weights[top], kind="stable")]
        if float(weights[order].sum(dtype=np.float64)) >= target:
            break
        k *= 8
    cumulative = np.cumsum(weights[order], dtype=np.float64)
    keep = min(int(np.searchsorted(cumulative, target)) + 1, len(order))
    return order[:keep]


def in_nucleus(shifted: np.ndarray, token: int, target: float) -> bool:
    """Whether top-p keeps ``token``: the probability ranked above it (ties by lower id, as a
    stable sort ranks them) is below ``target``. ``shifted`` are the logits less their
    maximum; ``target`` is ``top_p`` times the sum of their exponentials."""
    value = shifted[token]
    above = float(np.exp(shifted[shifted > value]).sum(dtype=np.float64))
    ties = int(np.count_nonzero(shifted[:token] == value))
    return above + ties * math.exp(float(value)) < target


def draw(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """One token from top-p, then temperature, then a draw from what is left (the most likely
    token at temperature 0), with ``rng`` as its random stream (see the module doc)."""
    if params.temperature <= 0.0:
        return int(np.argmax(logits))
    shifted = logits - logits.max()
    weights = _Weights(np.exp(shifted / params.temperature))
    if params.top_p >= 1.0:
        return weights.pick(rng.random())
    target = params.top_p * float(np.exp(shifted).sum(dtype=np.float64))
    for _ in range(REDRAWS):
        token = weights.pick(rng.random())
        if in_nucleus(shifted, token, target):
            return token
    return draw_among(nucleus(logits, params.top_p), logits, params.temperature, rng)


def draw_among(
    tokens: np.ndarray, logits: np.ndarray, temperature: float, rng: np.random.Generator
) -> int:
    """One of ``tokens`` (most likely first), in proportion to their temperature-scaled
    probabilities."""
    scaled = (logits[tokens] - logits[tokens[0]]) / temperature
    within = np.cumsum(np.exp(scaled, dtype=np.float64))
    return int(tokens[np.searchsorted(within, rng.random() * within[-1], side="right")])


class Vocabulary:
    """A model's tokens as dpl's decoders need them: each token's bytes, and which tokens end
    a turn (the chat template's end-of-turn tokens and llama.cpp's end-of-generation ones)."""

    def __init__(self, model: Any, stop_ids: Iterable[int] = ()) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.handle = llama_cpp.llama_model_get_vocab(model)
        self.size = int(llama_cpp.llama_vocab_n_tokens(self.handle))
        self._stop_ids = frozenset(int(t) for t in stop_ids)
        self._buffer = ctypes.create_string_buffer(64)

    def ends(self, token: int) -> bool:
        return token in self._stop_ids or bool(self._lib.llama_vocab_is_eog(self.handle, token))

    def piece(self, token: int) -> bytes:
        """The token's text as bytes (llama-cpp-python's own helper returns a fixed 32-byte
        buffer, trailing zeros included)."""
        size = len(self._buffer)
        n = self._lib.llama_token_to_piece(self.handle, token, self._buffer, size, 0, False)
        if n < 0:  # a longer piece than the buffer: grow it to the size asked for
            self._buffer = ctypes.create_string_buffer(-n)
            return self.piece(token)
        return self._buffer.raw[:n]

    @staticmethod
    def text_decoder() -> codecs.IncrementalDecoder:
        """Bytes of pieces to text; a character split across tokens comes out whole."""
        return codecs.getincrementaldecoder("utf-8")("replace")


class Sampler:
    """One generation's sampler: ``draw`` with a random stream of its own over the logits of
    a llama.cpp context, checked against a JSON grammar when there is one (module doc).
    ``grammar_first`` applies the grammar before every draw instead, as llama-cpp-python
    does (slower; kept to measure what asking about the drawn token saves)."""

    def __init__(
        self,
        vocab: Vocabulary,
        params: SamplingParams,
        grammar: str | None,
        seed: int,
        grammar_first: bool = False,
    ):
        import llama_cpp

        self._lib = llama_cpp  # kept: freeing may happen while the interpreter shuts down
        self._params = params
        self._rng = np.random.default_rng(seed)
        self._n_vocab = vocab.size
        self._grammar_first = grammar_first
        self._constrained = self._chain(params, seed, grammar, vocab.handle) if grammar else None
        self._grammar = llama_cpp.llama_sampler_chain_get(self._constrained, 0) if grammar else None
        self._candidates = llama_cpp.llama_token_data_array()
        self._data: Any = None  # the grammar's candidates, reused while large enough
        self._view = np.empty(0, TOKEN_DATA)
        self.refused = 0
        """Drawn tokens the grammar refused (each then costs a grammar question about the top-p
        set)."""
        self.fell_back = 0
        """Of those, the ones where the grammar allowed nothing in the top-p set, so that it was
        applied to the whole vocabulary."""

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits of output ``index`` of llama.cpp context ``ctx``."""
        llama_cpp = self._lib
        if self._constrained is not None and self._grammar_first:
            return int(llama_cpp.llama_sampler_sample(self._constrained, ctx, index))
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,)
        )
        token = draw(logits, self._params, self._rng)
        if self._constrained is None:
            return token
        if self._allowed(np.array([token]), logits).size:
            llama_cpp.llama_sampler_accept(self._constrained, token)
            return token
        self.refused += 1
        token = self._allowed_in_nucleus(logits)
        if token is None:
            self.fell_back += 1
            return int(llama_cpp.llama_sampler_sample(self._constrained, ctx, index))
        llama_cpp.llama_sampler_accept(self._constrained, token)
        return token

    def _allowed_in_nucleus(self, logits: np.ndarray) -> int | None:
        """After a refusal: a token drawn from the top-p set's tokens that the grammar allows
        (the most likely of them at temperature 0), or None when it allows none of them."""
        params = self._params
        if params.temperature <= 0.0:  # the most likely allowed token, if among the top ones
            top = np.sort(np.argpartition(logits, -NUCLEUS_FIRST)[-NUCLEUS_FIRST:])
            allowed = self._allowed(top[np.argsort(-logits[top], kind="stable")], logits)
            return int(allowed[0]) if allowed.size else None
        allowed = self._allowed(nucleus(logits, params.top_p), logits)
        if not allowed.size:
            return None
        return draw_among(allowed, logits, params.temperature, self._rng)

    def _allowed(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Those of ``tokens`` the grammar allows next, in their order: one grammar call over
        them, not over the vocabulary."""
        llama_cpp = self._lib
        n = len(tokens)
        if n > len(self._view):  # grown to the largest set yet: one allocation, not one a call
            self._data = (llama_cpp.llama_token_data * max(n, NUCLEUS_FIRST))()
            self._view = np.ctypeslib.as_array(self._data).view(TOKEN_DATA)
            self._candidates.data = self._data
        view = self._view[:n]
        view["id"] = tokens
        view["logit"] = logits[tokens]
        view["p"] = 0.0
        self._candidates.size = n
        self._candidates.selected = -1
        self._candidates.sorted = False
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._candidates))
        return tokens[np.isfinite(view["logit"])]

    def free(self) -> None:
        if self._constrained is not None:
            self._lib.llama_sampler_free(self._constrained)
        self._constrained = self._grammar = None

    @staticmethod
    def _chain(params: SamplingParams, seed: int, grammar: str, vocab: Any) -> Any:
        """The grammar followed by llama.cpp's own top-p, temperature and draw: used when the
        grammar allows no token of the top-p set (and in every draw with ``grammar_first``)."""
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            llama_cpp.llama_sampler_free(chain)
            raise ModelError("llama.cpp could not parse the JSON grammar for this schema.")
        add(chain, sampler)
        if params.temperature <= 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain
