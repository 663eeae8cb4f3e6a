"""GPU offload. The ``gpu`` tests need an NVIDIA GPU and a CUDA build of llama-cpp-python;
elsewhere they are skipped with the reason. One CPU test checks the fallback warning."""

from __future__ import annotations

import json

import pytest

from models import GpuFallbackWarning, SamplingParams
from models.gpu import nvidia_devices, planned_state, supports_gpu_offload
from models.llama import NO_GPU_BUILD_WARNING, load_generator

MESSAGES = [{"role": "user", "content": "Name three parts of a guitar."}]


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
    text, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=6, seed=1))
    assert text


@pytest.mark.skipif(supports_gpu_offload(), reason="this llama-cpp-python build has GPU support")
def test_default_on_a_cpu_build_is_cpu_without_warning(bundled_generator) -> None:
    assert bundled_generator.warnings == []
    assert bundled_generator.info.gpu_layers == 0
    assert planned_state(30).layers_offloaded == 0


@pytest.mark.gpu
@needs_gpu
def test_default_load_offloads_every_layer() -> None:
    gen = load_generator()
    assert gen.warnings == []
    assert gen.offload.measured, "llama.cpp did not report how many layers it offloaded"
    assert gen.offload.layers_offloaded == gen.offload.layers_total == 31
    assert gen.info.gpu_layers == 31 and gen.info.device != "CPU"
    assert gen.offload.active and "layers on" in gen.offload.summary()
    print("offload:", gen.offload.summary())


@pytest.mark.gpu
@needs_gpu
def test_gpu_generation_streams_and_is_seeded() -> None:
    gen = load_generator(n_gpu_layers=-1)
    a, stats = gen.complete(MESSAGES, SamplingParams(max_tokens=24, seed=7))
    b, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=24, seed=7))
    assert a and a == b
    assert stats.completion_tokens > 0 and stats.tokens_per_s > 0
    ttft_ms = stats.time_to_first_token_s * 1000
    print(f"GPU: {stats.tokens_per_s:.0f} tokens/s, TTFT {ttft_ms:.1f} ms")


@pytest.mark.gpu
@needs_gpu
def test_partial_offload_and_flash_attention() -> None:
    gen = load_generator(n_gpu_layers=10, flash_attn=True)
    assert gen.offload.layers_offloaded == 10
    text, _ = gen.complete(MESSAGES, SamplingParams(max_tokens=8, seed=1))
    assert text


@pytest.mark.gpu
@needs_gpu
def test_dpl_models_reports_the_gpu() -> None:
    from typer.testing import CliRunner

    from dpl_tui.cli import app

    result = CliRunner().invoke(app, ["models", "--json"])
    row = json.loads(result.output)[0]
    assert row["gpu_built"] and row["gpu_offload_active"]
    assert row["gpu_layers"] == row["gpu_layers_total"] == 31
    assert row["gpu_device"] == nvidia_devices()[0].name
    assert row["vram"].endswith("MiB")
