"""GPU offload. The ``gpu`` tests need an NVIDIA GPU and a CUDA build of llama-cpp-python;
elsewhere they are skipped with the reason. One CPU test checks the fallback warning.

The default model is whatever ``default_gguf_path()`` finds (``$DPL_DEFAULT_GGUF`` may point at
a copy under another name); layer counts come from its GGUF header."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import GpuFallbackWarning, SamplingParams
from models.gpu import (
    CPU_SETTINGS,
    GPU_SETTINGS,
    nvidia_devices,
    planned_state,
    supports_gpu_offload,
)
from models.llama import NO_GPU_BUILD_WARNING, load_generator
from models.registry import default_gguf_path, inspect_gguf

MESSAGES = [{"role": "user", "content": "Name three parts of a guitar."}]
OTHER = [{"role": "user", "content": "Name three parts of a guitar, then one of a drum kit."}]
REPO = Path(__file__).resolve().parents[2]


def _default_layers() -> int:
    """Offloadable layers of the default model: its blocks plus the output layer."""
    return inspect_gguf(default_gguf_path()).block_count + 1


def _gpu_skip_reason() -> str | None:
    if not supports_gpu_offload():
        return "llama-cpp-python was built without GPU support (install the CUDA wheel)"
    if not nvidia_devices():
        return "no NVIDIA GPU visible (nvidia-smi missing or reports none)"
    return None


needs_gpu = pytest.mark.skipif(_gpu_skip_reason() is not None, reason=_gpu_skip_reason() or "")


@pytest.mark.skipif(supports_gpu_offload(), reason="this llama-cpp-python build has GPU support")
def test_asking_for_offload_on_a_cpu_build_falls_back_with_a_warning() -> None:
    with pytest.warns(GpuFallbackWarning, match="built without GPU support"):
        gen = load_generator(n_gpu_layers=-1)
    assert gen.warnings == [NO_GPU_BUILD_WARNING]
    assert gen.info.gpu_layers == 0 and gen.info.device == "CPU"
    assert not gen.offload.active and "CPU only" in gen.offload.summary()
    assert gen.load_settings == CPU_SETTINGS
    text, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=6, seed=1))
    assert text


@pytest.mark.skipif(supports_gpu_offload(), reason="this llama-cpp-python build has GPU support")
def test_default_on_a_cpu_build_is_cpu_without_warning(bundled_generator) -> None:
    assert bundled_generator.warnings == []
    assert bundled_generator.info.gpu_layers == 0
    assert bundled_generator.load_settings == CPU_SETTINGS
    assert planned_state(30).layers_offloaded == 0


@pytest.mark.gpu
@needs_gpu
def test_default_load_offloads_every_layer() -> None:
    gen = load_generator()
    layers = _default_layers()
    assert gen.warnings == []
    assert gen.offload.measured, "llama.cpp did not report how many layers it offloaded"
    assert gen.offload.layers_offloaded == gen.offload.layers_total == layers
    assert gen.info.gpu_layers == layers and gen.info.device != "CPU"
    assert gen.offload.active and "layers on" in gen.offload.summary()
    # the settings chosen for a GPU, applied to llama.cpp's context
    assert gen.load_settings == GPU_SETTINGS
    assert gen.llm.n_batch == gen.llm.context_params.n_ubatch == GPU_SETTINGS.n_batch
    import llama_cpp

    assert gen.llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    print("offload:", gen.offload.summary(), "|", gen.load_settings.summary())


@pytest.mark.gpu
@needs_gpu
def test_gpu_generation_streams_and_is_seeded() -> None:
    """Same prompt and seed, same text, however many calls one process makes and whatever
    the context held before (a reused prompt prefix would change the GPU's batch shapes)."""
    gen = load_generator(n_gpu_layers=-1)
    assert gen.load_settings.reread_prompt
    params = SamplingParams(max_tokens=24, seed=7)
    a, stats = gen.complete(MESSAGES, params)
    b, _ = gen.complete(MESSAGES, params)  # the whole prompt is in the context already
    gen.complete(OTHER, SamplingParams(max_tokens=24, seed=8))  # a prompt sharing a prefix
    c, _ = gen.complete(MESSAGES, params)
    assert a and a == b == c
    assert stats.completion_tokens > 0 and stats.tokens_per_s > 0
    ttft_ms = stats.time_to_first_token_s * 1000
    print(f"GPU: {stats.tokens_per_s:.0f} tokens/s, TTFT {ttft_ms:.1f} ms")


@pytest.mark.gpu
@needs_gpu
def test_partial_offload_and_flash_attention() -> None:
    gen = load_generator(n_gpu_layers=10, flash_attn=True)
    assert gen.offload.layers_offloaded == 10
    assert gen.load_settings == GPU_SETTINGS
    text, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=8, seed=1))
    assert text


@pytest.mark.gpu
@needs_gpu
def test_flash_attention_turned_off_explicitly_keeps_the_gpu_batches() -> None:
    gen = load_generator(n_gpu_layers=-1, flash_attn=False)
    assert not gen.load_settings.flash_attn and gen.load_settings.n_batch == 512
    text, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=8, seed=1))
    assert text


# Run in a child process: with the settings that failed on an H200 (128-token prompt batches,
# flash attention off) llama.cpp aborted the whole process (CUDA 'illegal instruction'), which
# would take pytest down with it instead of failing one test.
LONG_PROMPT_CHILD = r"""
import json
from models import SamplingParams
from models.llama import load_generator

gen = load_generator()
reviews, messages, prompt = 0, [], 0
while prompt < 3200:
    reviews += 20
    text = " ".join(
        f"Review {i}: the strings on this guitar buzz at fret {i % 12 + 1}, the tuner holds "
        f"pitch for {i % 7 + 2} days, and the case latch broke after {i % 5 + 1} weeks."
        for i in range(reviews)
    )
    messages = [{"role": "user", "content": "Summarize these reviews.\n" + text}]
    prompt = gen.count_tokens(messages)
params = SamplingParams(max_tokens=24, seed=5)
first, stats = gen.complete(messages, params)
second, _ = gen.complete(messages, params)
print(json.dumps({
    "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
    "first": first, "second": second, "settings": gen.load_settings.summary(),
    "layers": gen.offload.layers_offloaded,
}))
"""


@pytest.mark.gpu
@needs_gpu
def test_a_3k_token_prompt_generates_on_the_gpu_without_aborting() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LONG_PROMPT_CHILD],
        cwd=REPO, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"the child exited with {done.returncode}; its stderr ends:\n{done.stderr[-2000:]}"
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("3k-token prompt:", result)
    assert result["layers"] > 0
    assert result["settings"] == GPU_SETTINGS.summary()
    assert result["prompt_tokens"] >= 3000 and result["completion_tokens"] > 0
    assert result["first"] and result["first"] == result["second"]


@pytest.mark.gpu
@needs_gpu
def test_dpl_models_reports_the_gpu() -> None:
    from typer.testing import CliRunner

    from dpl_tui.cli import app

    result = CliRunner().invoke(app, ["models", "--json"])
    row = json.loads(result.output)[0]
    assert row["gpu_built"] and row["gpu_offload_active"]
    assert row["gpu_layers"] == row["gpu_layers_total"] == _default_layers()
    assert row["gpu_device"] == nvidia_devices()[0].name
    assert row["vram"].endswith("MiB")
    assert row["load_settings"] == GPU_SETTINGS.summary()
    assert (row["n_batch"], row["flash_attn"], row["reread_prompt"]) == (512, True, True)


@pytest.mark.gpu
@needs_gpu
def test_json_calls_run_side_by_side_on_the_gpu_with_the_same_seed_giving_the_same_text() -> None:
    """A GPU load serves eight JSON calls at once; run twice with the same seeds, the side-by-side
    texts repeat (each sequence's numbers do not depend on what shares its steps)."""
    import threading

    gen = load_generator()
    assert gen.concurrency == GPU_SETTINGS.side_by_side > 1 and gen.side_by_side is not None
    assert not gen.side_by_side.settings.keep_prompts  # prompts read whole, as in the model's
    schema = {"type": "object", "properties": {"review": {"type": "string"}},
              "required": ["review"]}  # fmt: skip
    prompts = [MESSAGES, OTHER] * 2

    def answers() -> list:
        out: list = [None] * len(prompts)

        def one(i: int) -> None:
            params = SamplingParams(max_tokens=48, seed=20 + i)
            out[i] = gen.complete_json(prompts[i], schema, params)[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    first = answers()
    assert all(isinstance(a, dict) for a in first)
    assert answers() == first
    assert gen.side_by_side.most_at_once >= 2
