"""The real bundled GGUF in llama.cpp: streaming, counts, cancellation, locking, JSON, errors."""

from __future__ import annotations

import gc
import os
import re
import shutil
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from models import (
    ContextOverflowError,
    CorruptModelError,
    GenerationCancelled,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    NotGGUFError,
    SamplingParams,
    StructuredOutputError,
)
from models.llama import PROMPT_BATCH, LlamaGenerator, default_threads, load_generator
from models.registry import default_gguf_path

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "You write short product reviews."},
    {"role": "user", "content": "Write one sentence about a set of guitar strings."},
]


def test_loads_with_our_defaults(bundled_generator: LlamaGenerator) -> None:
    info = bundled_generator.info
    # the file's own name: $DPL_DEFAULT_GGUF may point at a copy named otherwise
    assert info.model_id == f"{default_gguf_path().name}:{info.size_bytes}"
    assert info.context_length == 8192 and info.n_ctx == 8192
    assert info.quantization == "Q4_1"
    # the chat template comes from the GGUF metadata
    assert "<|im_start|>" in bundled_generator._formatter.template


def test_stream_deltas_join_to_the_text_and_counts_agree(
    bundled_generator: LlamaGenerator,
) -> None:
    params = SamplingParams(max_tokens=16, seed=11)
    stream = bundled_generator.stream(MESSAGES, params)
    deltas = list(stream)
    assert deltas and all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == stream.text
    stats = stream.stats
    assert stats is not None
    assert stats.prompt_tokens == bundled_generator.count_tokens(MESSAGES)
    assert 1 <= stats.completion_tokens <= 16
    if stats.finish_reason == "length":
        assert stats.completion_tokens == 16
    assert 0 < stats.time_to_first_token_s <= stats.total_s
    assert stats.tokens_per_s > 0


def test_greedy_text_and_token_counts_are_llama_cpp_pythons(
    bundled_generator: LlamaGenerator,
) -> None:
    """dpl decodes and samples itself; at temperature 0 its text and counts are those of
    llama-cpp-python's own call (above it each draws from its own random stream)."""
    text, stats = bundled_generator.complete(
        MESSAGES, SamplingParams(temperature=0.0, max_tokens=16, seed=11)
    )
    # Where dpl re-reads every prompt (layers on a GPU), llama-cpp-python must read it afresh
    # too: its reuse of the cached prompt would read the last token alone, in another shape.
    if bundled_generator.load_settings.reread_prompt:
        bundled_generator.llm.reset()
    raw = bundled_generator.llm.create_chat_completion(
        messages=MESSAGES, temperature=0.0, max_tokens=16, seed=11
    )
    assert raw["choices"][0]["message"]["content"] == text
    assert raw["usage"]["prompt_tokens"] == stats.prompt_tokens
    assert raw["usage"]["completion_tokens"] == stats.completion_tokens


def test_same_seed_same_text_other_seed_differs(bundled_generator: LlamaGenerator) -> None:
    a, _ = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=20, seed=5))
    b, _ = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=20, seed=5))
    others = {
        bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=20, seed=s))[0]
        for s in (6, 7, 8)
    }
    assert a == b
    assert others - {a}, "three other seeds all gave the same text"


@pytest.mark.slow
def test_a_long_prompt_twice_with_one_seed_writes_the_same_text(
    bundled_generator: LlamaGenerator,
) -> None:
    """Keeping a cached prefix that ends inside a batch once changed the text of a second call
    on a prompt this long; the prefix is now kept in whole batches only."""
    line = "The strings held their tune through a long evening of practice; the tone stayed warm. "
    messages = [
        {
            "role": "user",
            "content": "Past reviews:\n" + line * 230 + "\nWrite a short review of a capo.",
        }
    ]
    assert bundled_generator.count_tokens(messages) > 3500
    params = SamplingParams(temperature=0.8, max_tokens=24, seed=7)
    first, _ = bundled_generator.complete(messages, params)
    second, _ = bundled_generator.complete(messages, params)
    bundled_generator.llm.reset()  # read from the first token, as a new process would
    fresh, _ = bundled_generator.complete(messages, params)
    assert first == second == fresh


def test_stop_after_three_tokens_then_generate_again(bundled_generator: LlamaGenerator) -> None:
    stream = bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=24, seed=3))
    got = []
    for delta in stream:
        got.append(delta)
        if len(got) == 3:
            break
    stream.close()
    assert stream.stats is not None and stream.stats.finish_reason == "cancelled"
    assert stream.stats.completion_tokens >= 3
    assert stream.text == "".join(got)
    # the model is usable at once, and the next answer is unaffected by the cancelled one
    text, stats = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=24, seed=3))
    assert text.startswith("".join(got))
    assert stats.finish_reason in {"stop", "length"}


def test_a_long_prompt_is_cancelled_between_batches_of_reading(
    bundled_generator: LlamaGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_messages = [
        {"role": "user", "content": "Summarize: " + "The strings buzz on the fifth fret. " * 300}
    ]
    params = SamplingParams(max_tokens=8, seed=1)
    llm = bundled_generator.llm
    batch = bundled_generator.load_settings.n_batch
    assert batch == PROMPT_BATCH or bundled_generator.offload.active  # larger on a GPU
    stream = bundled_generator.stream(long_messages, params)
    read: list[int] = []
    real_eval = llm.eval

    def eval_then_close(tokens: list[int]) -> None:
        read.append(len(tokens))
        real_eval(tokens)
        if len(read) == 2:  # Escape pressed in another thread while the prompt is read
            closer = threading.Thread(target=stream.close)
            closer.start()
            closer.join()

    monkeypatch.setattr(llm, "eval", eval_then_close)
    assert list(stream) == []
    monkeypatch.undo()
    assert read == [batch, batch]  # two batches read, then it stopped
    assert stream.stats is not None and stream.stats.finish_reason == "cancelled"
    assert stream.stats.completion_tokens == 0 and stream.stats.prompt_tokens > 4 * batch
    # The model is free at once; the half-read prompt changes nothing about the next answer,
    # which is what a fresh context gives for the same seed.
    text, _ = bundled_generator.complete(long_messages, params)
    llm.reset()
    fresh, _ = bundled_generator.complete(long_messages, params)
    assert text and fresh == text


def test_dropping_a_stream_releases_the_model(bundled_generator: LlamaGenerator) -> None:
    stream = bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=8, seed=1))
    next(stream)
    del stream
    gc.collect()
    text, _ = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=4, seed=1))
    assert text


def test_a_second_open_stream_in_the_same_thread_is_refused(
    bundled_generator: LlamaGenerator,
) -> None:
    with bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=4, seed=1)):
        with pytest.raises(ModelError, match="still open"):
            bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=4, seed=1))
    text, _ = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=4, seed=1))
    assert text


def test_racing_threads_wait_for_each_other(bundled_generator: LlamaGenerator) -> None:
    spans: list[tuple[float, float]] = []
    texts: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            stream = bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=12, seed=i))
            start = time.perf_counter()
            texts[i] = "".join(stream)
            spans.append((start, time.perf_counter()))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(texts) == 3 and all(texts.values())
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two generations ran on one model at the same time"
    # serialised runs give what a lone run gives
    alone, _ = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=12, seed=1))
    assert texts[1] == alone


def test_cancel_from_another_thread(bundled_generator: LlamaGenerator) -> None:
    stream = bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=24, seed=9))
    first = next(stream)
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join()
    rest = list(stream)
    assert stream.stats is not None and stream.stats.finish_reason == "cancelled"
    assert len(rest) <= 1 and stream.text == first + "".join(rest)
    assert bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=4, seed=9))[0]


def test_over_long_prompt_raises_the_typed_error(bundled_generator: LlamaGenerator) -> None:
    long_text = "The strings buzz on the third fret. " * 1200
    messages = [{"role": "user", "content": long_text}]
    needed_prompt = bundled_generator.count_tokens(messages)
    assert needed_prompt > bundled_generator.n_ctx
    with pytest.raises(ContextOverflowError) as err:
        bundled_generator.stream(messages, SamplingParams(max_tokens=10))
    assert err.value.needed == needed_prompt + 10
    assert err.value.available == bundled_generator.n_ctx == 8192
    assert str(needed_prompt + 10) in str(err.value)
    assert "DPL_N_CTX=N (now 8192; the model was trained on 8,192 tokens)" in str(err.value)
    # the model is not left locked
    assert bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=4, seed=2))[0]


def test_prompt_plus_max_tokens_counts(bundled_generator: LlamaGenerator) -> None:
    prompt = bundled_generator.count_tokens(MESSAGES)
    with pytest.raises(ContextOverflowError):
        bundled_generator.stream(MESSAGES, SamplingParams(max_tokens=8192 - prompt + 1))


SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "mixed"]},
        "recommend": {"type": "boolean"},
    },
    "required": ["sentiment", "recommend"],
    "additionalProperties": False,
}


def test_schema_constrained_output_validates(bundled_generator: LlamaGenerator) -> None:
    messages = [
        {
            "role": "user",
            "content": "Review: 'Bright tone, strings stay in tune, "
            "great value.' Reply with JSON: sentiment and whether you recommend it.",
        }
    ]
    value, stats = bundled_generator.complete_json(
        messages, SCHEMA, SamplingParams(max_tokens=40, seed=4)
    )
    jsonschema.validate(value, SCHEMA)
    assert stats.completion_tokens > 0


def test_unfinishable_json_raises_with_the_raw_text(bundled_generator: LlamaGenerator) -> None:
    messages = [{"role": "user", "content": "Reply with JSON."}]
    with pytest.raises(StructuredOutputError) as err:
        bundled_generator.complete_json(messages, SCHEMA, SamplingParams(max_tokens=3, seed=1))
    assert err.value.raw.startswith("{")
    # the retry of an answer cut off at 3 tokens had 6
    assert "max_tokens=6" in str(err.value)
    assert (err.value.attempts, err.value.stats.completion_tokens) == (2, 3 + 6)


def test_a_greedy_answer_cut_short_is_finished_by_its_longer_retry(
    bundled_generator: LlamaGenerator,
) -> None:
    messages = [
        {
            "role": "user",
            "content": "Review: 'Bright tone, strings stay in tune, "
            "great value.' Reply with JSON: sentiment and whether you recommend it.",
        }
    ]
    greedy = SamplingParams(max_tokens=200, temperature=0.0, seed=4)
    whole, once = bundled_generator.complete_json(messages, SCHEMA, greedy)
    assert once.attempts == 1 and once.completion_tokens >= 4
    short = SamplingParams(max_tokens=once.completion_tokens - 1, temperature=0.0, seed=4)
    value, stats = bundled_generator.complete_json(messages, SCHEMA, short)
    assert value == whole  # the same greedy answer, written whole by the retry
    assert stats.attempts == 2
    assert stats.completion_tokens == short.max_tokens + once.completion_tokens


def test_a_greedy_answer_that_failed_is_not_retried_when_the_retry_would_repeat_it(
    bundled_generator: LlamaGenerator,
) -> None:
    """At temperature 0 an answer that was not cut off would be written again: no retry. (A
    bare boolean is valid JSON, but not the object complete_json returns.)"""
    messages = [{"role": "user", "content": "Is a capo useful? Reply with JSON."}]
    greedy = SamplingParams(max_tokens=20, temperature=0.0, seed=1)
    with pytest.raises(StructuredOutputError) as err:
        bundled_generator.complete_json(messages, {"type": "boolean"}, greedy)
    assert err.value.raw.strip() in ("true", "false")
    assert "is not a JSON object, after 1 attempt." in str(err.value)
    assert err.value.attempts == 1 and err.value.stats.attempts == 1
    sampled = SamplingParams(max_tokens=20, temperature=0.8, seed=1)
    with pytest.raises(StructuredOutputError) as err:  # above temperature 0 the retry is made
        bundled_generator.complete_json(messages, {"type": "boolean"}, sampled)
    assert err.value.attempts == 2


def test_json_generation_stops_on_request_and_frees_the_model(
    bundled_generator: LlamaGenerator,
) -> None:
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 3

    messages = [{"role": "user", "content": "Describe a guitar in JSON."}]
    with pytest.raises(GenerationCancelled):
        bundled_generator.complete_json(
            messages, SCHEMA, SamplingParams(max_tokens=200, seed=2), stop=stop
        )
    # asked after every token (and by the JSON context before its steps); it ended once the
    # answer was yes, with no retry
    assert 3 <= len(asked) <= 4
    # The model is free again at once: a new request runs to its end.
    text, stats = bundled_generator.complete(MESSAGES, SamplingParams(max_tokens=4, seed=1))
    assert stats.finish_reason in ("stop", "length") and stats.completion_tokens >= 1


# loading errors -------------------------------------------------------------------


def test_dpl_threads_sets_llama_cpp_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPL_THREADS", "1")
    generator = load_generator()
    assert generator.info.threads == 1
    text, _ = generator.complete(
        [{"role": "user", "content": "Say hi."}], SamplingParams(max_tokens=4, seed=1)
    )
    assert text.strip()
    monkeypatch.delenv("DPL_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))


def test_dpl_n_ctx_sets_the_context_of_the_model_and_of_its_json_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DPL_N_CTX", "1024")
    generator = load_generator()
    assert generator.n_ctx == 1024 and generator.side_by_side.settings.n_ctx == 1024
    with pytest.raises(ContextOverflowError, match=r"DPL_N_CTX=N \(now 1024;"):
        generator.stream(MESSAGES, SamplingParams(max_tokens=1024))
    assert load_generator(n_ctx=512).n_ctx == 512  # an explicit n_ctx wins


@pytest.mark.parametrize("value", ["abc", "0", "-5", "8k"])
def test_a_bad_dpl_n_ctx_is_a_readable_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DPL_N_CTX", value)
    with pytest.raises(ModelLoadError, match=f"DPL_N_CTX='{value}' is not a number of tokens"):
        load_generator()


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_dpl_threads_is_a_readable_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DPL_THREADS", value)
    with pytest.raises(ModelLoadError, match=f"DPL_THREADS='{re.escape(value)}'.*at least 1"):
        load_generator()


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="absent.gguf"):
        load_generator(tmp_path / "absent.gguf")


def test_text_file_renamed_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "readme.gguf"
    fake.write_text("# not a model\n")
    with pytest.raises(NotGGUFError, match="readme.gguf"):
        load_generator(fake)


def test_truncated_model_is_caught_before_llama_cpp(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with default_gguf_path().open("rb") as src:
        cut.write_bytes(src.read(3 * 1024 * 1024))
    with pytest.raises(CorruptModelError, match="cut.gguf.*truncated"):
        load_generator(cut)


def test_llama_cpp_load_failure_is_a_readable_error(tmp_path: Path) -> None:
    """A complete GGUF whose architecture llama.cpp does not know: its own failure, translated."""
    odd = tmp_path / "odd-arch.gguf"
    shutil.copyfile(default_gguf_path(), odd)
    data = bytearray(odd.read_bytes()[:4096])
    key = b"general.architecture"
    at = data.index(key) + len(key) + 4 + 8  # value type (u32) and string length (u64)
    assert data[at : at + 5] == b"llama"
    with odd.open("r+b") as fh:
        fh.seek(at)
        fh.write(b"zzzzz")
    with pytest.raises(ModelLoadError) as err:
        load_generator(odd)
    assert "odd-arch.gguf" in str(err.value) and "zzzzz" in str(err.value)


def test_model_larger_than_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.llama as llama_mod

    monkeypatch.setattr(llama_mod, "available_memory_bytes", lambda: 10 * 1024 * 1024)
    with pytest.raises(ModelLoadError) as err:
        load_generator(n_gpu_layers=0)
    message = str(err.value)
    assert default_gguf_path().name in message
    # The bundled model: 94 MiB of weights; 30 layers x 3 KV heads x (64 + 64) f16 values per
    # token for its 8,192-token context and the JSON calls' 2,048 cells: 225 MiB of KV cache.
    cache = 30 * 3 * (64 + 64) * 2 * (8192 + 2048)
    assert cache == 235_929_600
    needed = (default_gguf_path().stat().st_size + cache) / 1024**3
    assert f"needs about {needed:.1f} GiB" in message
    assert "0.1 GiB of weights, 0.2 GiB of KV cache for 10,240 tokens" in message
    assert "only 0.0 GiB is available" in message and "smaller" in message


def test_the_memory_check_counts_the_kv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.llama as llama_mod

    # Room for the weights, not for the weights and the KV cache: refused before llama.cpp
    # allocates anything; a shorter context fits, and the JSON calls' context is no larger
    # than the model's own (1,024 cells each, not 2,048 for the JSON calls).
    weights = default_gguf_path().stat().st_size
    per_token = 30 * 3 * (64 + 64) * 2
    monkeypatch.setattr(
        llama_mod, "available_memory_bytes", lambda: weights + per_token * (1024 + 1024)
    )
    with pytest.raises(ModelLoadError, match="KV cache for 10,240 tokens"):
        load_generator(n_gpu_layers=0)
    small = load_generator(n_gpu_layers=0, n_ctx=1024)
    assert small.n_ctx == 1024 and small.side_by_side.settings.cells == 1024


def test_a_context_too_large_for_memory_names_one_that_fits(monkeypatch: pytest.MonkeyPatch):
    """Where the KV cache outweighs the model, a smaller quantization would not help: the
    error names the DPL_N_CTX that fits, and that one loads."""
    import models.llama as llama_mod

    weights = default_gguf_path().stat().st_size
    per_token = 30 * 3 * (64 + 64) * 2
    room = weights + per_token * (8192 + 2048) + per_token * 500  # 8,192 fits, 9,216 not
    monkeypatch.setattr(llama_mod, "available_memory_bytes", lambda: room)
    monkeypatch.setenv("DPL_N_CTX", "65536")
    with pytest.raises(ModelLoadError) as err:
        load_generator(n_gpu_layers=0)
    message = str(err.value)
    assert "KV cache for 67,584 tokens" in message
    assert "Most of it is the context: load a smaller one, DPL_N_CTX=8192 or less" in message
    assert "(now 65,536)" in message and "quantization" not in message
    monkeypatch.setenv("DPL_N_CTX", "8192")
    assert load_generator(n_gpu_layers=0).n_ctx == 8192


def test_explicit_small_context(tmp_path: Path) -> None:
    gen = load_generator(n_ctx=256)
    assert gen.n_ctx == 256 and gen.side_by_side.settings.n_ctx == 256
    with pytest.raises(ContextOverflowError) as err:
        gen.stream(MESSAGES, SamplingParams(max_tokens=250))
    assert err.value.available == 256


def test_context_not_a_multiple_of_256_is_the_real_limit() -> None:
    # llama.cpp rounds 640 up to 768 internally; a prompt between the two must be refused
    # with the typed error, and one that fits 640 must generate without a crash.
    gen = load_generator(n_ctx=640)
    assert gen.n_ctx == 640
    filler = "The tuner clips on and holds pitch well. "
    fits = [{"role": "user", "content": filler * 50}]
    assert gen.count_tokens(fits) < 600
    text, stats = gen.complete(
        fits, SamplingParams(max_tokens=640 - gen.count_tokens(fits), seed=1)
    )
    assert stats.prompt_tokens == gen.count_tokens(fits)
    too_long = [{"role": "user", "content": filler * 65}]
    assert 640 < gen.count_tokens(too_long) + 8 <= 768
    with pytest.raises(ContextOverflowError):
        gen.stream(too_long, SamplingParams(max_tokens=8))
