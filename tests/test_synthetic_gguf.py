"""benchmarks/synthetic_gguf.py writes a GGUF that dpl's header check accepts and the real
llama.cpp loads and decodes with, here at a tiny shape (the GPU check makes a 7B one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.synthetic_gguf import Shape, write_synthetic_gguf
from models import SamplingParams
from models.registry import default_gguf_path, inspect_gguf

TINY = Shape(layers=2, hidden=128, heads=4, kv_heads=2, ffn=256, ctx=4096)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_gguf(tmp_path_factory.mktemp("syn") / "tiny.gguf", TINY, seed=3).path


def test_the_header_is_complete_and_says_the_shape(tiny_gguf: Path) -> None:
    info = inspect_gguf(tiny_gguf)
    bundled = inspect_gguf(default_gguf_path())
    assert (info.architecture, info.block_count, info.context_length) == ("llama", 2, 4096)
    assert info.quantization == "Q4_0"
    assert info.size_bytes == info.expected_size
    assert info.metadata["llama.attention.head_count_kv"] == 2
    assert info.chat_template == bundled.chat_template
    assert not tiny_gguf.with_name("tiny.gguf.partial").exists()


def test_the_same_seed_writes_the_same_file(tiny_gguf: Path, tmp_path: Path) -> None:
    again = write_synthetic_gguf(tmp_path / "again.gguf", TINY, seed=3)
    assert again.path.read_bytes() == tiny_gguf.read_bytes()
    assert again.tensors == 3 + 9 * TINY.layers


@pytest.mark.slow
def test_llama_cpp_loads_it_and_generates(tiny_gguf: Path) -> None:
    from models.llama import load_generator

    generator = load_generator(tiny_gguf, n_ctx=512, side_by_side=1)
    assert generator.gguf.architecture == "llama"
    assert generator.gguf.block_count == 2
    messages = [{"role": "user", "content": "Describe this guitar strap in one sentence."}]
    greedy = SamplingParams(temperature=0.0, max_tokens=8, seed=1)
    _, stats = generator.complete(messages, greedy)
    assert stats.completion_tokens >= 1
    assert stats.prompt_tokens > 10  # the bundled chat template wrapped the message


@pytest.mark.parametrize(
    "shape, message",
    [
        (Shape(hidden=100, heads=4), "multiple of 32"),
        (Shape(heads=28, kv_heads=5), "multiple of --kv-heads"),
        (Shape(layers=0), "--layers must be at least 1"),
    ],
)
def test_a_shape_llama_cpp_cannot_load_is_refused(shape: Shape, message: str, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_gguf(tmp_path / "bad.gguf", shape)
    assert list(tmp_path.iterdir()) == []
