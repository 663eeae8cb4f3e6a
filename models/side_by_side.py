"""Several generations decoded side by side in one llama.cpp context.

A target's differences are up to eight independent JSON answers. One after another,
each decode step feeds the model a single token, and on a GPU most of the step is
overhead; in one context that holds several sequences, a step feeds one token of every
sequence in flight, so the weights are read once for all of them.

``SideBySide`` owns that second context (on the same loaded weights; created on first
use) and schedules requests into it:

* A request reads its prompt in the generator's prompt batches, as a call one after
  another does, and then joins the shared decode steps; each sequence has its own
  sampler and, for JSON, its own grammar state.
* Each sequence has a stream of cells of its own (llama.cpp's non-unified cache), so it
  attends over its own tokens only and its numbers are those of a call alone: for a given
  seed the text is the one-after-another text. (With one shared stream every
  sequence attended over all the others' masked cells; on two CPU cores that made eight
  differences slower side by side, 131 s, than one after another, 72 s.)
* A sequence starts when one of the streams is free; more calls than streams wait and
  start as others finish. A call too long for one stream is not sent here (``fits``).
* There is no thread of its own: whichever caller asks for a token while nobody is
  stepping runs the next step for everyone, and the others wait for their pieces.
  Each step holds the generator's lock, so the primary context and this one never
  run at the same time.
* A caller's ``stop`` is asked between prompt batches and before every step, so a
  cancel lands within one batch; a cancelled sequence leaves the batch and frees its
  cells at once.

Every sequence samples with dpl's own sampler (``models.sampling``): a random stream of its
own per sequence and the JSON grammar asked about the drawn token (after a refusal, about the
top-p set), as a call through the model's own context samples, so a JSON answer is the same
side by side as one after another for a given seed.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import GenerationStats, SamplingParams, TextStream
from .errors import ModelError
from .sampling import Sampler, Vocabulary

STEP_WAIT_S = 0.05
"""How often a caller waiting for its next piece looks at its ``stop``."""


CELLS_PER_SEQUENCE = 2048
"""Context each sequence gets: a differences prompt of the default settings is about 1.3k
tokens, plus its 320 to generate. A call that needs more runs in the model's own context."""


@dataclass(frozen=True)
class SideBySideSettings:
    """How many sequences share the context, and the cells each one has of it."""

    sequences: int
    cells: int = CELLS_PER_SEQUENCE
    keep_prompts: bool = False
    """A finished call's prompt stays in its sequence's cells, and a later call whose prompt
    begins the same way (a retry of a JSON answer cut off by its token limit) reads only what
    follows the prompt batches they share: kept in whole batches, as a first read makes them,
    a prompt gives the same numbers on the CPU (kept up to its last token, it did not always).
    On a GPU the batch shapes change the numbers anyway, and prompts are read whole there."""

    @property
    def n_ctx(self) -> int:
        return self.sequences * self.cells


@dataclass(eq=False)
class _Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    grammar: str | None
    adapters: tuple[Any, ...]
    stop: Callable[[], bool] | None
    seed: int
    pieces: deque[str] = field(default_factory=deque)
    done: bool = False
    finish: str = ""
    error: BaseException | None = None
    closed: bool = False
    seq_id: int = -1
    next_token: int = -1
    pos: int = 0
    completion: int = 0
    sampler: Sampler | None = None
    decoder: Any = field(default_factory=Vocabulary.text_decoder)
    started: float = 0.0
    first: float = 0.0
    ended: float = 0.0

    def wants_stop(self) -> bool:
        return self.closed or (self.stop is not None and self.stop())


class SideBySideStream(TextStream):
    """One sequence's text deltas; iterating may run decode steps for every sequence."""

    def __init__(self, owner: SideBySide, seq: _Sequence) -> None:
        self._owner = owner
        self._seq = seq
        self._parts: list[str] = []
        self.stats = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return "".join(self._parts)

    def __next__(self) -> str:
        piece = self._owner._next_piece(self._seq)
        if piece is None:
            self._set_stats()
            raise StopIteration
        self._parts.append(piece)
        return piece

    def close(self) -> None:
        self._owner._close(self._seq)
        self._set_stats()

    def _set_stats(self) -> None:
        seq = self._seq
        if self.stats is not None or not seq.done:
            return
        end = seq.ended or time.perf_counter()
        start = seq.started or end
        first = seq.first or end
        decode_s = end - first
        n = seq.completion
        self.stats = GenerationStats(
            prompt_tokens=len(seq.prompt_ids),
            completion_tokens=n,
            time_to_first_token_s=first - start,
            total_s=end - start,
            tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
            finish_reason=seq.finish,
        )


class SideBySide:
    """A llama.cpp context of several sequences beside a generator's own (see module doc)."""

    def __init__(
        self,
        llm: Any,
        settings: SideBySideSettings,
        *,
        acquire: Callable[[], None],
        release: Callable[[], None],
        vocab: Vocabulary,
        grammar_first: bool = False,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp  # kept: closing may happen while the interpreter shuts down
        self._llm = llm
        self._vocab = vocab
        self.grammar_first = grammar_first
        """Passed to each sequence's ``Sampler`` (see there)."""
        self.settings = settings
        self._acquire = acquire
        self._release = release
        self._cond = threading.Condition()
        self._waiting: deque[_Sequence] = deque()
        self._active: list[_Sequence] = []
        self._driving = False
        self._ctx: Any = None
        self._batch: Any = None
        self._applied: tuple[Any, ...] = ()
        self.steps = 0
        """Decode steps run so far (each feeds one token of every sequence in flight)."""
        self.most_at_once = 0
        """The most sequences one step has decoded together."""
        self.sampled = 0
        self.sampling_s = 0.0
        """Tokens sampled so far, and the seconds their sampling took (grammar included)."""
        self.refused = 0
        """Of those, the tokens first drawn that a JSON grammar refused (``Sampler.refused``)."""
        self.fell_back = 0
        """Of those, the ones replaced with the grammar over the whole vocabulary
        (``Sampler.fell_back``)."""
        self.reused = 0
        """Prompt tokens not read again: found in a sequence's cells (``keep_prompts``)."""
        self._kept: dict[int, tuple[list[int], tuple[Any, ...]]] = {}
        """Per free sequence id: the prompt its cells still hold, and the adapters it was read
        with."""

    # public ---------------------------------------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        seed: int,
        grammar: str | None = None,
        adapters: tuple[Any, ...] = (),
        stop: Callable[[], bool] | None = None,
    ) -> SideBySideStream:
        """Queue one generation; its stream yields text as the shared steps produce it."""
        if not self.fits(len(prompt_ids), params.max_tokens):
            raise ModelError(
                f"a prompt of {len(prompt_ids)} tokens plus {params.max_tokens} to generate "
                f"does not fit a side-by-side sequence of {self.settings.cells} tokens."
            )
        seq = _Sequence(list(prompt_ids), params, grammar, adapters, stop, seed)
        with self._cond:
            self._waiting.append(seq)
        return SideBySideStream(self, seq)

    def fits(self, prompt_tokens: int, max_tokens: int) -> bool:
        """Whether a call of this size fits one sequence's cells."""
        return prompt_tokens + max_tokens <= self.settings.cells

    def close(self) -> None:
        """Free the context (the generator is being dropped)."""
        llama_cpp = self._lib
        with self._cond:
            for seq in [*self._active, *self._waiting]:
                self._finish(seq, "cancelled")
            self._active.clear()
            self._waiting.clear()
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
                self._batch = None
            if self._ctx is not None:
                llama_cpp.llama_free(self._ctx)
                self._ctx = None

    # waiting and driving --------------------------------------------------
    def _next_piece(self, seq: _Sequence) -> str | None:
        while True:
            with self._cond:
                while True:
                    if seq.pieces:
                        return seq.pieces.popleft()
                    if seq.done:
                        if seq.error is not None:
                            raise seq.error
                        return None
                    if not self._driving:
                        self._driving = True
                        break
                    self._cond.wait(STEP_WAIT_S)
            try:
                self._step()
            except BaseException as err:  # every sequence in flight shares the failure
                with self._cond:
                    for other in [*self._active, *self._waiting]:
                        other.error = err
                        self._finish(other, "error")
                    self._active.clear()
                    self._waiting.clear()
                    self._reset_memory()
            finally:
                with self._cond:
                    self._driving = False
                    self._cond.notify_all()

    def _close(self, seq: _Sequence) -> None:
        with self._cond:
            if seq.done:
                return
            seq.closed = True
            if seq in self._waiting:
                self._waiting.remove(seq)
                self._finish(seq, "cancelled")
                return
        # in flight: the next step drops it; run one if nobody is stepping
        while not seq.done:
            self._next_piece(seq)

    # one step ---------------------------------------------------------------
    def _step(self) -> None:
        self._acquire()
        try:
            self._ensure_context()
            self._drop_stopped()
            self._admit()
            self._drop_stopped()
            if self._active:
                self._decode()
        finally:
            self._release()

    def _drop_stopped(self) -> None:
        with self._cond:
            for seq in [s for s in self._active if s.wants_stop()]:
                self._active.remove(seq)
                self._remove_cells(seq)
                self._finish(seq, "cancelled")
            for seq in [s for s in self._waiting if s.wants_stop()]:
                self._waiting.remove(seq)
                self._finish(seq, "cancelled")

    def _admit(self) -> None:
        """Start waiting sequences while cells and sequence ids allow, reading their prompts."""
        while True:
            with self._cond:
                if not self._waiting:
                    return
                seq = self._waiting[0]
                used = {s.seq_id for s in self._active}
                same_weights = not self._active or self._applied == seq.adapters
                if len(used) >= self.settings.sequences or not same_weights:
                    return
                self._waiting.popleft()
                free = sorted(set(range(self.settings.sequences)) - used)
                seq.seq_id = max(free, key=lambda i: self._held(i, seq))  # the first on ties
                self._active.append(seq)
            self._apply_adapters(seq.adapters)
            self._start(seq)

    def _start(self, seq: _Sequence) -> None:
        seq.started = time.perf_counter()
        seq.sampler = Sampler(
            self._vocab,
            seq.params,
            seq.grammar,
            seq.seed,
            self.grammar_first,
        )
        ids, step = seq.prompt_ids, self._llm.n_batch
        start = min(self._held(seq.seq_id, seq), len(ids) - 1)  # the last one gives the logits
        start -= start % step  # whole batches only, as a first read makes them (same numbers)
        self._kept.pop(seq.seq_id, None)
        memory = self._lib.llama_get_memory(self._ctx)
        if not self._lib.llama_memory_seq_rm(memory, seq.seq_id, start, -1):
            self._lib.llama_memory_seq_rm(memory, seq.seq_id, -1, -1)
            start = 0
        self.reused += start
        for begin in range(start, len(ids), step):
            if seq.wants_stop():
                return  # dropped by the next _drop_stopped
            chunk = ids[begin : begin + step]
            self._fill([(seq.seq_id, t, begin + j) for j, t in enumerate(chunk)], last_only=True)
            self._run_batch()
        seq.pos = len(ids)
        self._take(seq, self._sample(seq, -1))

    def _decode(self) -> None:
        active = list(self._active)
        self._fill([(s.seq_id, s.next_token, s.pos) for s in active], last_only=False)
        self._run_batch()
        self.steps += 1
        self.most_at_once = max(self.most_at_once, len(active))
        for i, seq in enumerate(active):
            seq.pos += 1
            self._take(seq, self._sample(seq, i))

    def _sample(self, seq: _Sequence, index: int) -> int:
        assert seq.sampler is not None
        refused, fell_back = seq.sampler.refused, seq.sampler.fell_back
        start = time.perf_counter()
        token = seq.sampler.sample(self._ctx, index)
        self.sampling_s += time.perf_counter() - start
        self.sampled += 1
        self.refused += seq.sampler.refused - refused
        self.fell_back += seq.sampler.fell_back - fell_back
        return token

    def _take(self, seq: _Sequence, token: int) -> None:
        """Record a sampled token: a piece of text, or the end of the sequence."""
        if self._vocab.ends(token):
            reason = "stop"
        else:
            seq.completion += 1
            seq.next_token = token
            piece = seq.decoder.decode(self._vocab.piece(token))
            with self._cond:
                if not seq.first:
                    seq.first = time.perf_counter()
                if piece:
                    seq.pieces.append(piece)
            if seq.completion < seq.params.max_tokens:
                return
            reason = "length"
        tail = seq.decoder.decode(b"", final=True)
        with self._cond:
            if tail:
                seq.pieces.append(tail)
            self._active.remove(seq)
            if self.settings.keep_prompts:  # its prompt was read whole: kept for a later call
                self._kept[seq.seq_id] = (seq.prompt_ids, seq.adapters)
                seq.seq_id = -1
            else:
                self._remove_cells(seq)
            self._finish(seq, reason)

    # llama.cpp --------------------------------------------------------------
    def _ensure_context(self) -> None:
        if self._ctx is not None:
            return
        import llama_cpp

        params = type(self._llm.context_params).from_buffer_copy(self._llm.context_params)
        params.n_ctx = self.settings.n_ctx
        params.n_seq_max = self.settings.sequences
        params.kv_unified = False  # a stream of cells per sequence: see the module doc
        ctx = llama_cpp.llama_init_from_model(self._llm.model, params)
        if not ctx:
            raise ModelError(
                f"llama.cpp could not make a context of {self.settings.n_ctx} tokens for "
                f"{self.settings.sequences} sequences side by side (out of memory?)."
            )
        self._ctx = ctx
        size = max(self._llm.n_batch, self.settings.sequences)
        self._batch = llama_cpp.llama_batch_init(size, 0, 1)

    def _apply_adapters(self, adapters: tuple[Any, ...]) -> None:
        if adapters == self._applied:
            return
        import llama_cpp

        count = len(adapters)
        if not count:
            failed = llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*(a.handle for a in adapters))
            scales = (ctypes.c_float * count)(*(a.scale for a in adapters))
            failed = llama_cpp.llama_set_adapters_lora(self._ctx, handles, count, scales)
        if failed:
            raise ModelError("llama.cpp could not switch adapters on the side-by-side context.")
        self._applied = adapters

    def _fill(self, tokens: list[tuple[int, int, int]], *, last_only: bool) -> None:
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (seq_id, token, pos) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = (i == len(tokens) - 1) if last_only else True

    def _run_batch(self) -> None:
        import llama_cpp

        result = llama_cpp.llama_decode(self._ctx, self._batch)
        if result != 0:
            raise ModelError(
                f"llama.cpp could not decode a side-by-side batch (llama_decode returned {result})."
            )

    def _held(self, seq_id: int, seq: _Sequence) -> int:
        """How many of ``seq``'s first prompt tokens sequence ``seq_id``'s cells hold."""
        kept = self._kept.get(seq_id) if self.settings.keep_prompts else None
        if kept is None or kept[1] != seq.adapters:
            return 0
        held = 0
        for mine, theirs in zip(kept[0], seq.prompt_ids, strict=False):
            if mine != theirs:
                break
            held += 1
        return held

    def _remove_cells(self, seq: _Sequence) -> None:
        import llama_cpp

        self._kept.pop(seq.seq_id, None)
        if seq.seq_id >= 0 and self._ctx is not None:
            memory = llama_cpp.llama_get_memory(self._ctx)
            llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, -1, -1)
        seq.seq_id = -1

    def _reset_memory(self) -> None:
        import llama_cpp

        self._kept.clear()
        if self._ctx is not None:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)

    def _finish(self, seq: _Sequence, reason: str) -> None:
        if seq.done:
            return
        seq.done = True
        seq.finish = reason
        seq.ended = time.perf_counter()
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
