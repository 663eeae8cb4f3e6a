"""GGUF chat generation through llama.cpp (llama-cpp-python), streaming and cancellable.

llama-cpp-python's own defaults do not suit us (512-token context, one thread on
small machines, no GPU offload), so ``load_generator`` sets each one explicitly:
see ``docs/readme/models.md``. The file is inspected before llama.cpp opens it,
so bad files get a readable error instead of a native crash.
"""

from __future__ import annotations

import copy
import ctypes
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .adapters import AdapterInfo
from .base import ChatMessage, GenerationStats, ModelInfo, SamplingParams, TextGenerator, TextStream
from .errors import (
    ContextOverflowError,
    CorruptModelError,
    GpuFallbackWarning,
    ModelError,
    ModelLoadError,
)
from .gpu import (
    CPU_PROMPT_BATCH,
    CPU_SETTINGS,
    MAX_SIDE_BY_SIDE,
    LoadSettings,
    OffloadState,
    choose_load_settings,
    default_side_by_side,
    env_count,
    nvidia_devices,
)
from .registry import GGUFInfo, default_gguf_path, inspect_gguf
from .sampling import Sampler, Vocabulary
from .side_by_side import CELLS_PER_SEQUENCE, SideBySide, SideBySideSettings

DEFAULT_MAX_CTX = 8192
"""Context allocated when none is asked for (or the model's training context if smaller)."""

PROMPT_BATCH = CPU_PROMPT_BATCH
"""Prompt tokens llama.cpp reads per batch (its ``n_batch``) on the CPU, and between two checks
for cancellation. llama-cpp-python reads a whole prompt in one uninterruptible call; read batch
by batch here instead, a long prompt can be cancelled within one batch. On the CPU this is
as fast as llama.cpp's default of 512 per batch. With layers on a GPU the batches are larger
(``models.gpu.choose_load_settings``)."""

NO_GPU_BUILD_WARNING = (
    "GPU offload was requested but the installed llama-cpp-python was built without GPU "
    "support, so the model runs on the CPU. Install the CUDA build to offload (see the "
    "README, 'GPU offload with CUDA')."
)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo; None where that is not readable."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


THREADS_ENV = "DPL_THREADS"
N_CTX_ENV = "DPL_N_CTX"


def default_n_ctx(training_context: int) -> int:
    """``$DPL_N_CTX`` when set, else min(8192, the model's training context; 8192 when the
    file does not give it). Raises ModelLoadError for a value that is not a whole number of
    at least 1."""
    n_ctx = env_count(
        N_CTX_ENV,
        "a number of tokens of context",
        f"set it to a whole number of tokens (for example {N_CTX_ENV}=16384), or unset it for "
        f"min({DEFAULT_MAX_CTX}, the model's training context).",
    )
    return n_ctx or min(DEFAULT_MAX_CTX, training_context or DEFAULT_MAX_CTX)


def default_threads() -> int:
    """``$DPL_THREADS`` when set, else every CPU this process may use (llama-cpp-python's
    default is half of them). Measured on two cores (``benchmarks/cold_path.py``): on an idle
    machine two threads decode 1.7x faster than one; beside one busy process, one thread is
    1.7x faster than two, whose threads spin while one waits for a core. So the default is
    every CPU, and a machine shared with other work sets ``DPL_THREADS=1``.

    Raises ModelLoadError for a value that is not a whole number of at least 1."""
    threads = env_count(
        THREADS_ENV,
        "a number of threads",
        f"set it to a whole number of at least 1 (for example {THREADS_ENV}=1), or unset it "
        "to use every CPU.",
    )
    if threads is not None:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class _Adapter:
    info: AdapterInfo
    handle: Any
    """llama.cpp's adapter, freed with the model."""
    scale: float


class _LlamaLog:
    """Collects llama.cpp's log lines while a model loads, instead of printing them."""

    _active: _LlamaLog | None = None
    _callback: Any = None

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.lines: list[str] = []

    def __enter__(self) -> _LlamaLog:
        import llama_cpp

        if _LlamaLog._callback is None:

            @llama_cpp.llama_log_callback
            def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                log = _LlamaLog._active
                if log is None:
                    return
                message = text.decode("utf-8", errors="replace")
                log.lines.append(message)
                if log.echo:
                    os.write(2, text)

            _LlamaLog._callback = callback
        _LlamaLog._active = self
        llama_cpp.llama_log_set(_LlamaLog._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        import llama_cpp
        from llama_cpp import _logger

        _LlamaLog._active = None
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def offloaded(self) -> tuple[int, int] | None:
        found = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", self.text)
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def device(self) -> str | None:
        found = re.findall(r"using device \S+ \(([^)]*)\)", self.text)
        return found[-1] if found else None

    def error(self) -> str:
        """The last line that looks like the reason for a failure."""
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        for pattern in (r"error", r"failed|invalid|cannot|out of memory|unable"):
            for line in reversed(lines):
                if re.search(pattern, line, re.I):
                    return re.sub(r"^(\w+: )+", "", line)
        return lines[-1] if lines else ""


class LlamaStream(TextStream):
    """Text deltas from one generation; holds the model's lock until exhausted or closed.

    dpl decodes token by token itself: the prompt is read in batches (``_read_prompt``),
    then each token is drawn by dpl's sampler (``models.sampling``) from the context's last
    logits and fed back to the model before the next one is drawn."""

    def __init__(
        self,
        generator: LlamaGenerator,
        prompt_ids: list[int],
        sampler: Sampler,
        max_tokens: int,
    ) -> None:
        self._gen = generator
        self._sampler: Sampler | None = sampler
        self._prompt_ids = prompt_ids
        self._max_tokens = max_tokens
        self._decoder = Vocabulary.text_decoder()
        self._fed: int | None = None
        """The token drawn last, fed to the model before the next draw."""
        self._count = 0
        self._ending = ""
        self._start = 0.0
        self._first = 0.0
        self._parts: list[str] = []
        self._cancel = threading.Event()
        self._busy = threading.Lock()
        self.stats = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return "".join(self._parts)

    def __next__(self) -> str:
        with self._busy:
            while True:
                if self._sampler is None:
                    raise StopIteration
                if self._ending or self._cancel.is_set():
                    self._finish_stream(self._ending or "cancelled")
                    raise StopIteration
                try:
                    piece = self._advance()
                except BaseException:
                    self._finish_stream("error")
                    raise
                if piece:
                    if not self._first:
                        self._first = time.perf_counter()
                    self._parts.append(piece)
                    return piece

    def _advance(self) -> str:
        """Read the prompt or feed the last token, then draw one: its text (maybe empty)."""
        gen, llm = self._gen, self._gen.llm
        if not self._start:
            self._start = time.perf_counter()
            if not gen._read_prompt(self._prompt_ids, self._cancel.is_set):
                return ""  # cancelled while reading: finished at the loop's top
        elif self._fed is not None:
            llm.eval([self._fed])
        assert self._sampler is not None
        token = self._sampler.sample(llm.ctx, -1)
        if gen.vocab.ends(token):
            self._ending = "stop"
            return self._decoder.decode(b"", final=True)
        self._count += 1
        self._fed = token
        piece = self._decoder.decode(gen.vocab.piece(token))
        if self._count >= self._max_tokens:
            self._ending = "length"
            piece += self._decoder.decode(b"", final=True)
        return piece

    def close(self) -> None:
        """Stop generating now; the model is free for the next request when this returns.

        From another thread while a token is being produced, it asks the stream to
        stop after that token."""
        if self._sampler is None:
            return
        if not self._busy.acquire(blocking=False):
            self._cancel.set()
            return
        try:
            if self._sampler is not None:
                self._finish_stream("cancelled")
        finally:
            self._busy.release()

    def _finish_stream(self, reason: str) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            return
        end = time.perf_counter()
        try:
            sampler.free()
        finally:
            self._gen._release()
        start = self._start or end
        first = self._first or end
        decode_s = end - first
        completion = self._count
        self.stats = GenerationStats(
            prompt_tokens=len(self._prompt_ids),
            completion_tokens=completion,
            time_to_first_token_s=first - start,
            total_s=end - start,
            tokens_per_s=(completion - 1) / decode_s if completion > 1 and decode_s > 0 else 0.0,
            finish_reason=reason,
        )

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


class LlamaGenerator(TextGenerator):
    """A GGUF chat model in llama.cpp. One generation at a time; others wait on the lock."""

    can_stream = True
    supports_json_schema = True
    load_settings: LoadSettings = CPU_SETTINGS
    """Batch size, flash attention and prompt re-reading this model was loaded with."""

    def __init__(
        self,
        llm: Any,
        info: ModelInfo,
        gguf: GGUFInfo,
        formatter: Any,
        offload: OffloadState,
        warnings_: list[str],
        load_settings: LoadSettings = CPU_SETTINGS,
        side_by_side: SideBySide | None = None,
    ) -> None:
        self.llm = llm
        self.vocab = Vocabulary(llm.model, _end_of_turn_ids(formatter, llm))
        """Token texts and the tokens that end the model's turn, for dpl's decoders."""
        self.info = info
        self.gguf = gguf
        self.offload = offload
        self.load_settings = load_settings
        self.warnings: list[str] = warnings_
        """Why the model runs differently from what was asked (e.g. CPU instead of GPU)."""
        self._formatter = formatter
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._adapters: tuple[_Adapter, ...] = ()
        """The LoRAs this view applies to every call, in order; empty for the base model."""
        self._applied: list[tuple[_Adapter, ...]] = [()]
        """What the shared context has applied now (one cell, shared by every view)."""
        self.side_by_side = side_by_side
        """The second context JSON calls are decoded in (together where it holds several
        sequences); None: they run through llama-cpp-python in the model's own context."""
        self._grammars: dict[str, str] = {}

    @property
    def concurrency(self) -> int:  # type: ignore[override]
        """JSON calls served at once: the side-by-side sequences (1 on the CPU)."""
        return self.side_by_side.settings.sequences if self.side_by_side is not None else 1

    # locking -------------------------------------------------------------
    def _acquire(self) -> None:
        if self._owner == threading.get_ident():
            raise ModelError(
                f"A generation on {self.info.model_id} is still open in this thread. "
                "Finish or close the previous stream before starting another."
            )
        self._lock.acquire()
        self._owner = threading.get_ident()

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    # adapters ------------------------------------------------------------
    @property
    def adapter(self) -> AdapterInfo | None:
        """The first LoRA adapter this generator applies (the task adapter), if any."""
        return self._adapters[0].info if self._adapters else None

    @property
    def adapters(self) -> tuple[AdapterInfo, ...]:
        """Every LoRA adapter this generator applies, in the order they were stacked."""
        return tuple(a.info for a in self._adapters)

    @property
    def base(self) -> LlamaGenerator:
        """The same loaded model without an adapter (itself when it has none)."""
        return self._base if self._adapters else self

    def with_adapter(self, path: str | Path, scale: float = 1.0) -> LlamaGenerator:
        """A view of this model that applies the LoRA adapter at ``path`` to its calls, on
        top of the adapters this generator already applies (llama.cpp adds their updates).

        The view shares the loaded weights, the context and the lock with this generator,
        so both can be used in turn (the base model reads users, the view writes reviews).
        Switching between them clears the context's cached prompt, since its states were
        computed under the other weights. The view's ``model_id`` names base and adapters.

        Raises AdapterError for a file that is not an adapter, one made for another base,
        or one llama.cpp refuses (the reason it logged is in the message)."""
        import llama_cpp

        from .adapters import AdapterError, check_base, inspect_adapter

        info = inspect_adapter(path)
        check_base(info, self.gguf)
        with _LlamaLog(echo=False) as log:
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(info.path).encode())
        if not handle:
            raise AdapterError(
                f"llama.cpp could not apply adapter {info.path!r} to {self.info.model_id!r}: "
                f"{log.error() or 'unknown error'}. Train it again for this base (dpl tune)."
            )
        view = copy.copy(self)
        view._base = self.base
        view._adapters = (*self._adapters, _Adapter(info, handle, float(scale)))
        names = "+".join(a.info.adapter_id for a in view._adapters)
        view.info = replace(self.base.info, model_id=f"{self.base.info.model_id}+{names}")
        return view

    def _apply_adapter(self) -> None:
        """Put this view's adapters on the shared context (the lock is held)."""
        applied = self._applied[0]
        if len(applied) == len(self._adapters) and all(
            a is b for a, b in zip(applied, self._adapters, strict=True)
        ):
            return
        import llama_cpp

        count = len(self._adapters)
        if not count:
            failed = llama_cpp.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * count)(
                *(a.handle for a in self._adapters)
            )
            scales = (ctypes.c_float * count)(*(a.scale for a in self._adapters))
            failed = llama_cpp.llama_set_adapters_lora(self.llm.ctx, handles, count, scales)
        if failed:
            raise ModelError(f"llama.cpp could not switch adapters on {self.info.model_id}.")
        self.llm.reset()  # cached states belong to the other weights: read prompts anew
        self._applied[0] = self._adapters

    def next_token_logits(self, ids: Sequence[int]) -> list[float]:
        """The logits llama.cpp gives the token after ``ids`` (read from scratch), with this
        view's adapter applied. For checking an adapter against the framework it came from."""
        import numpy as np

        self._acquire()
        try:
            self._apply_adapter()
            self.llm.reset()
            self.llm.eval(list(ids))
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
            return logits.astype(float).tolist()
        finally:
            self._release()

    # training examples ---------------------------------------------------
    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt's tokens exactly as a call would read them (chat template included)."""
        return self._prompt_ids(messages)

    def text_token_ids(self, text: str) -> list[int]:
        """Plain text as tokens, without a start token (a completion to train on)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    @property
    def end_of_turn_id(self) -> int:
        """The token that ends the model's turn under its chat template."""
        return _end_of_turn_ids(self._formatter, self.llm)[0]

    # tokens --------------------------------------------------------------
    def _prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        result = self._formatter(messages=[dict(m) for m in messages])
        return self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_ids(messages))

    @property
    def larger_context(self) -> str:
        trained = self.gguf.context_length
        known = f"; the model was trained on {trained:,} tokens" if trained else ""
        return f"load the model with a larger context: {N_CTX_ENV}=N (now {self.n_ctx}{known})"

    def _read_prompt(self, ids: list[int], stop: Callable[[], bool]) -> bool:
        """Feed the prompt to llama.cpp one batch at a time, asking ``stop`` before each;
        returns False when it said stop.

        It keeps what the context already holds of the prompt, cut back to a whole number
        of batches, and reads the rest in batches: every prompt is then computed in the same
        batches as when it was read from its first token, so the same seed gives the same
        text (kept states from a batch of another shape differ in the last bits, and on long
        prompts that was seen to change the text). At most one batch is read again, and at
        least the prompt's last token, whose logits the first draw takes.

        With ``load_settings.reread_prompt`` (layers on a GPU) nothing is kept: the context is
        emptied and the whole prompt read from its first token, so every call computes the
        prompt in the same batches and the same seed gives the same text."""
        llm = self.llm
        if self.load_settings.reread_prompt:
            llm.reset()
            llm._ctx.kv_cache_clear()
            return self._read_from(0, ids, stop)
        held = llm.input_ids[: llm.n_tokens].tolist()
        start = 0
        while start < min(len(held), len(ids)) and held[start] == ids[start]:
            start += 1
        if start == len(ids):
            start -= 1  # as llama-cpp-python does: re-read the last token for fresh logits
        start -= start % llm.n_batch  # whole batches only, as a first read makes them
        if start < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, start, -1):
            llm.reset()  # a cache that cannot be cut (recurrent models) is read from the start
            start = 0
        llm.n_tokens = start
        return self._read_from(start, ids, stop)

    def _read_from(self, start: int, ids: list[int], stop: Callable[[], bool]) -> bool:
        llm = self.llm
        for begin in range(start, len(ids), llm.n_batch):
            if stop():
                return False
            llm.eval(ids[begin : begin + llm.n_batch])
        return not stop()

    # generation ----------------------------------------------------------
    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        schema: dict[str, Any] | None = None,
    ) -> LlamaStream:
        """A generation in the model's own context; ``schema``: constrained to that JSON
        schema by a llama.cpp grammar (``complete_json`` parses and checks the text)."""
        if params.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {params.max_tokens}")
        grammar = self._grammar(schema) if schema is not None else None
        self._acquire()
        try:
            self._apply_adapter()
            prompt_ids = self._prompt_ids(messages)
            needed = len(prompt_ids) + params.max_tokens
            if needed > self.n_ctx:
                raise ContextOverflowError(
                    needed, self.n_ctx, self.info.model_id, self.larger_context
                )
            seed = params.seed if params.seed is not None else random.randrange(2**31)
            sampler = Sampler(self.vocab, params, grammar, seed)
        except BaseException:
            self._release()
            raise
        return LlamaStream(self, prompt_ids, sampler, params.max_tokens)

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        from .structured import complete_json

        def open_stream(p: SamplingParams) -> TextStream:
            side = self.side_by_side
            if side is not None:
                prompt_ids = self._prompt_ids(messages)
                needed = len(prompt_ids) + p.max_tokens
                if needed > self.n_ctx:
                    raise ContextOverflowError(
                        needed, self.n_ctx, self.info.model_id, self.larger_context
                    )
                if side.fits(len(prompt_ids), p.max_tokens):
                    return side.submit(
                        prompt_ids,
                        p,
                        seed=p.seed if p.seed is not None else random.randrange(2**31),
                        grammar=self._grammar(schema),
                        adapters=tuple(self._adapters),
                        stop=stop,
                    )
            return self.stream(messages, p, schema=schema)

        return complete_json(
            self.info.model_id,
            open_stream,
            schema,
            params,
            retries=retries,
            stop=stop,
            room=lambda: self.n_ctx - self.count_tokens(messages),
        )

    def _grammar(self, schema: dict[str, Any]) -> str:
        """The GBNF grammar llama-cpp-python would make of ``schema`` (kept per schema)."""
        import json

        from llama_cpp.llama_grammar import LlamaGrammar

        key = json.dumps(schema)  # property order matters to the grammar, as it does there
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)._grammar
        return self._grammars[key]


def _end_of_turn_ids(formatter: Any, llm: Any) -> list[int]:
    """The tokens that end the model's turn under its chat template (the first one is the
    one training examples end with)."""
    stops = sorted(int(t) for t in getattr(formatter, "stop_token_ids", None) or ())
    return stops or [int(llm.token_eos())]


def _side_settings(settings: LoadSettings, n_ctx: int) -> SideBySideSettings:
    """The JSON calls' context: ``settings.side_by_side`` sequences of CELLS_PER_SEQUENCE
    tokens each, or of the model's own context where that is smaller (a call that fits
    neither runs in the model's context, where it fails as it would without one)."""
    return SideBySideSettings(
        settings.side_by_side,
        cells=min(CELLS_PER_SEQUENCE, n_ctx),
        keep_prompts=not settings.reread_prompt,
    )


def _check_memory(gguf: GGUFInfo, n_ctx: int, settings: LoadSettings) -> None:
    """Refuse a CPU load that would not fit: the model file, the KV cache of its context and
    that of the JSON calls' context (``models.side_by_side``), against the memory available."""
    side = _side_settings(settings, n_ctx).n_ctx
    cells = n_ctx + side
    cache = gguf.kv_cache_bytes(cells)
    size = gguf.size_bytes + cache
    available = available_memory_bytes()
    if available is not None and size > available:
        gib = 1024**3
        remedy = (
            "Close other programs, pick a smaller quantization (e.g. Q4_K_M) or model, or "
            "offload layers to a GPU."
        )
        per_cell = gguf.kv_cache_bytes(1)
        if cache > gguf.size_bytes and per_cell:
            # most of it is the context: name the largest one that fits, in whole thousands
            fits = ((available - gguf.size_bytes) // per_cell - side) // 1024 * 1024
            if fits >= 1024:
                remedy = (
                    f"Most of it is the context: load a smaller one, DPL_N_CTX={fits} or less "
                    f"(now {n_ctx:,}), or close other programs."
                )
        raise ModelLoadError(
            f"Model {gguf.path!r} needs about {size / gib:.1f} GiB of memory "
            f"({gguf.size_bytes / gib:.1f} GiB of weights, {cache / gib:.1f} GiB of KV cache "
            f"for {cells:,} tokens) but only {available / gib:.1f} GiB is available. {remedy}"
        )


def _make_llama(
    path: Path,
    n_ctx: int,
    n_gpu_layers: int,
    settings: LoadSettings,
    verbose: bool,
    n_threads: int,
) -> tuple[Any, _LlamaLog]:
    from llama_cpp import Llama

    log = _LlamaLog(echo=verbose)
    try:
        with log:
            llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_gpu_layers=n_gpu_layers,
                flash_attn=settings.flash_attn,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=settings.n_batch,
                n_ubatch=settings.n_ubatch,
                verbose=verbose,
            )
    except (ValueError, RuntimeError, OSError) as err:
        raise _LoadFailed(log.error() or str(err)) from err
    return llm, log


class _LoadFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _formatter_for(llm: Any, gguf: GGUFInfo) -> Any:
    from llama_cpp import llama_chat_format

    template = gguf.chat_template or llm.metadata.get("tokenizer.chat_template")
    if not template:
        return llama_chat_format.format_llama2
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )


def load_generator(
    path: str | Path | None = None,
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    flash_attn: bool | None = None,
    verbose: bool = False,
    n_threads: int | None = None,
    side_by_side: int | None = None,
) -> LlamaGenerator:
    """Load a GGUF chat model (default: the bundled SmolLM2-135M-Instruct).

    ``n_ctx``: tokens of context, default ``$DPL_N_CTX``, else min(8192, the model's
    training context).
    ``n_gpu_layers``: -1 offloads every layer; default -1 when llama.cpp was built with
    GPU support, else 0. If the GPU cannot be used the model loads on the CPU and the
    reason is kept in ``generator.warnings`` (and issued as a GpuFallbackWarning).
    Prompt batch size, flash attention and prompt re-reading follow from where the model runs
    (``models.gpu.choose_load_settings``; kept in ``generator.load_settings``); ``flash_attn``
    True or False overrides the choice of flash attention, None leaves it to the device.
    ``side_by_side``: JSON calls decoded together (``models.side_by_side``); default
    ``$DPL_SIDE_BY_SIDE``, else ``models.gpu.SIDE_BY_SIDE`` with layers on a GPU and one after
    another (1) on the CPU.

    Raises ModelNotFoundError, NotGGUFError, CorruptModelError or ModelLoadError."""
    import llama_cpp

    path = Path(path).expanduser() if path is not None else default_gguf_path()
    gguf = inspect_gguf(path)
    built_with_gpu = bool(llama_cpp.llama_supports_gpu_offload())
    notes: list[str] = []
    if n_gpu_layers is None:
        n_gpu_layers = -1 if built_with_gpu else 0
    elif n_gpu_layers != 0 and not built_with_gpu:
        notes.append(NO_GPU_BUILD_WARNING)
        n_gpu_layers = 0
    if n_ctx is None:
        n_ctx = default_n_ctx(gguf.context_length)
    threads = n_threads or default_threads()
    sequences = side_by_side if side_by_side is not None else default_side_by_side()
    if sequences is not None and not 1 <= sequences <= MAX_SIDE_BY_SIDE:
        raise ModelLoadError(f"side_by_side must be from 1 to {MAX_SIDE_BY_SIDE}, got {sequences}.")
    settings = choose_load_settings(built_with_gpu and n_gpu_layers != 0, flash_attn, sequences)
    if n_gpu_layers == 0:
        _check_memory(gguf, n_ctx, settings)
    try:
        llm, log = _make_llama(path, n_ctx, n_gpu_layers, settings, verbose, threads)
    except _LoadFailed as err:
        reason = err.reason
        if n_gpu_layers == 0:
            raise _load_error(path, gguf, reason) from None
        notes.append(f"GPU initialisation failed ({reason}), so the model runs on the CPU.")
        n_gpu_layers = 0
        settings = choose_load_settings(False, flash_attn, sequences)
        _check_memory(gguf, n_ctx, settings)
        try:
            llm, log = _make_llama(path, n_ctx, 0, settings, verbose, threads)
        except _LoadFailed as err2:
            raise _load_error(path, gguf, err2.reason) from None

    for note in notes:
        warnings.warn(note, GpuFallbackWarning, stacklevel=2)

    total = gguf.block_count + 1 if gguf.block_count else 0
    measured = log.offloaded()
    if measured is not None:
        layers, total = measured
    else:
        layers = 0 if n_gpu_layers == 0 else (total if n_gpu_layers < 0 else n_gpu_layers)
    device = "CPU"
    devices = nvidia_devices() if built_with_gpu and layers else ()
    if layers:
        device = log.device() or (devices[0].name if devices else "GPU")
    offload = OffloadState(built_with_gpu, devices, layers, total, measured is not None, device)

    info = ModelInfo(
        model_id=gguf.model_id,
        path=str(path),
        size_bytes=gguf.size_bytes,
        quantization=gguf.quantization,
        context_length=gguf.context_length,
        # llama.cpp may round its context up (to a multiple of 256), but llama-cpp-python
        # sizes its own token buffer at the requested value: the smaller one is the real limit.
        n_ctx=min(n_ctx, llm.n_ctx()),
        gpu_offload_supported=built_with_gpu,
        gpu_layers=layers,
        device=device,
        threads=threads,
    )
    formatter = _formatter_for(llm, gguf)
    # dpl decodes itself (LlamaStream); llama-cpp-python's own chat calls on this Llama, which
    # tests and benchmarks compare against, get the same template
    llm.chat_handler = (
        formatter.to_chat_handler()
        if hasattr(formatter, "to_chat_handler")
        else _handler_for_function(formatter)
    )
    generator = LlamaGenerator(llm, info, gguf, formatter, offload, notes, settings)
    # JSON calls are decoded in a context of their own, side by side on a GPU and one at a
    # time on the CPU, with dpl's sampler (see models.side_by_side)
    side = SideBySide(
        llm,
        _side_settings(settings, info.n_ctx),
        acquire=generator._acquire,
        release=generator._release,
        vocab=generator.vocab,
    )
    llm._stack.callback(side.close)  # freed before the model it was made from
    generator.side_by_side = side
    return generator


def _handler_for_function(formatter: Any) -> Any:
    from llama_cpp import llama_chat_format

    return llama_chat_format.chat_formatter_to_chat_completion_handler(formatter)


def _load_error(path: Path, gguf: GGUFInfo, reason: str) -> ModelError:
    if re.search(
        r"corrupt|truncat|not within the file bounds|unexpected end|failed to read", reason, re.I
    ):
        return CorruptModelError(
            f"llama.cpp could not read {str(path)!r}: {reason}. The file looks damaged; "
            "download it again."
        )
    arch = f" (architecture {gguf.architecture!r})" if gguf.architecture else ""
    return ModelLoadError(
        f"llama.cpp could not load {str(path)!r}{arch}: {reason or 'unknown error'}. "
        "Update llama-cpp-python if the architecture is new, or pick another GGUF model."
    )
