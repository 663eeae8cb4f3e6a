"""Which llama.cpp settings go with where the model runs (pure functions, no model loaded;
the fallback test loads the bundled model on the CPU)."""

from __future__ import annotations

import pytest

from models.gpu import (
    CPU_SETTINGS,
    GPU_SETTINGS,
    GpuDevice,
    LoadSettings,
    OffloadState,
    choose_load_settings,
    planned_settings,
)
from models.llama import PROMPT_BATCH

H200 = GpuDevice(0, "NVIDIA H200", 4, 143_771)
ON_GPU = OffloadState(True, (H200,), 31, 31, measured=False, device_name="NVIDIA H200")
GPU_BUILD_NO_LAYERS = OffloadState(True, (H200,), 0, 31)
CPU_BUILD = OffloadState(False, (), 0, 31)


def test_layers_on_a_gpu_get_flash_attention_512_token_batches_and_a_full_reread() -> None:
    settings = planned_settings(ON_GPU)
    assert settings == choose_load_settings(True) == GPU_SETTINGS
    assert settings == LoadSettings(n_batch=512, n_ubatch=512, flash_attn=True,
                                    reread_prompt=True, side_by_side=8)
    assert settings.summary() == (
        "512-token prompt batches, flash attention on, prompt re-read per call, "
        "8 JSON calls side by side"
    )


@pytest.mark.parametrize("state", [CPU_BUILD, GPU_BUILD_NO_LAYERS], ids=["cpu-build", "0-layers"])
def test_the_cpu_keeps_its_settings(state: OffloadState) -> None:
    settings = planned_settings(state)
    assert settings == choose_load_settings(False) == CPU_SETTINGS
    assert settings == LoadSettings(n_batch=128, n_ubatch=128, flash_attn=False,
                                    reread_prompt=False)
    assert settings.n_batch == PROMPT_BATCH
    assert settings.side_by_side == 1
    assert settings.summary() == "128-token prompt batches, flash attention off"


def test_an_explicit_flash_attn_wins_and_changes_nothing_else() -> None:
    assert choose_load_settings(True, flash_attn=False) == LoadSettings(512, 512, False, True, 8)
    assert choose_load_settings(False, flash_attn=True) == LoadSettings(128, 128, True, False)
    assert choose_load_settings(True, flash_attn=True) == GPU_SETTINGS
    assert choose_load_settings(False, flash_attn=False) == CPU_SETTINGS


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        GPU_SETTINGS.n_batch = 128  # type: ignore[misc]


@pytest.mark.slow
def test_a_gpu_load_that_fails_falls_back_with_the_cpu_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GPU build whose GPU cannot be initialised: the first load is asked for with the GPU
    settings, the CPU load that follows with the CPU ones, and the generator says so."""
    import llama_cpp

    import models.llama as llama_mod
    from models import GpuFallbackWarning

    real_make = llama_mod._make_llama
    asked: list[tuple[int, LoadSettings]] = []

    def make(path, n_ctx, n_gpu_layers, settings, verbose, n_threads):
        asked.append((n_gpu_layers, settings))
        if n_gpu_layers != 0:
            raise llama_mod._LoadFailed("no CUDA-capable device is detected")
        return real_make(path, n_ctx, n_gpu_layers, settings, verbose, n_threads)

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    monkeypatch.setattr(llama_mod, "_make_llama", make)
    monkeypatch.setattr(llama_mod, "nvidia_devices", lambda: ())
    with pytest.warns(GpuFallbackWarning, match="GPU initialisation failed"):
        gen = llama_mod.load_generator()
    assert asked == [(-1, GPU_SETTINGS), (0, CPU_SETTINGS)]
    assert gen.load_settings == CPU_SETTINGS and not gen.offload.active
    assert gen.llm.n_batch == PROMPT_BATCH
    assert gen.llm.context_params.n_ubatch == PROMPT_BATCH


@pytest.mark.slow
def test_the_default_cpu_load_uses_the_cpu_settings(bundled_generator) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build offloads to a GPU by default")
    assert bundled_generator.load_settings == CPU_SETTINGS
    llm = bundled_generator.llm
    assert llm.n_batch == llm.context_params.n_ubatch == PROMPT_BATCH
    assert llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED


def test_an_explicit_side_by_side_count_wins_on_either_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert choose_load_settings(True, side_by_side=1).side_by_side == 1
    assert "side by side" not in choose_load_settings(True, side_by_side=1).summary()
    assert choose_load_settings(False, side_by_side=4).side_by_side == 4
    monkeypatch.setenv("DPL_SIDE_BY_SIDE", "3")
    assert planned_settings(CPU_BUILD).side_by_side == 3
    assert planned_settings(ON_GPU).side_by_side == 3
