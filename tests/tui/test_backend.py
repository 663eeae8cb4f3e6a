"""ModelHolder: one load per model from any thread, and waits that end when the app closes;
the GPU status label."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

from dpl_tui.backend import ModelHolder, gpu_label
from models import ModelError
from models.gpu import CPU_SETTINGS, GPU_SETTINGS, OffloadState
from tests.engine.fakes import FakeEmbedder, FakeGenerator


def test_a_wait_for_another_threads_load_gives_up_when_the_app_closes():
    started, release = threading.Event(), threading.Event()
    loads = []

    def slow_generator(_choice):
        loads.append(1)
        started.set()
        release.wait(30)
        return FakeGenerator()

    holder = ModelHolder(None, generator_factory=slow_generator,
                         embedder_factory=lambda _p: FakeEmbedder())  # fmt: skip
    loader = threading.Thread(target=holder.generator)
    loader.start()
    assert started.wait(10)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            holder.generator()
        except ModelError as err:
            errors.append(err)

    waiting = threading.Thread(target=waiter)
    waiting.start()
    holder.close()
    waiting.join(10)
    assert not waiting.is_alive() and "closing" in str(errors[0])
    # the load itself runs on and is kept; it happened once
    release.set()
    loader.join(10)
    assert loads == [1] and holder.loaded_generator is not None


def test_loads_once_and_answers_every_caller():
    holder = ModelHolder(None, generator_factory=lambda _c: FakeGenerator(),
                         embedder_factory=lambda _p: FakeEmbedder())  # fmt: skip
    assert holder.generator() is holder.generator()
    assert holder.embedder() is holder.embedder()
    holder.close()  # closing does not take away what is loaded
    assert holder.generator() is holder.loaded_generator


def test_a_switch_reloads_the_embedder_only_when_the_new_model_embeds_elsewhere():
    sources = {None: "local", "big.gguf": "local", "lab": "gte@127.0.0.1:8000"}
    loaded: list[str | None] = []

    def embedder_for(choice):
        loaded.append(choice)
        return FakeEmbedder()

    holder = ModelHolder(None, generator_factory=lambda _c: FakeGenerator(),
                         embedder_factory=embedder_for,
                         embedder_source=sources.__getitem__)  # fmt: skip
    local = holder.embedder()
    holder.switch_model("big.gguf")  # another GGUF: the same local embedder serves
    assert holder.embedder() is local and loaded == [None]
    holder.switch_model("lab")  # a server entry with its own embedding model
    remote = holder.embedder()
    assert remote is not local and loaded == [None, "lab"]
    holder.switch_model(None)  # back to the local one: loaded again for the bundled model
    assert holder.embedder() is not remote and loaded == [None, "lab", None]


def test_the_gpu_label_names_flash_attention_and_batch_only_when_offloaded():
    on_gpu = OffloadState(True, (), 31, 31, measured=True, device_name="NVIDIA H200")
    gen = SimpleNamespace(offload=on_gpu, load_settings=GPU_SETTINGS)
    assert gpu_label(gen) == (
        "on, 31/31 layers on NVIDIA H200 (flash attention on, batch 512, "
        "8 JSON calls side by side)"
    )
    one_at_a_time = SimpleNamespace(offload=on_gpu, load_settings=replace(GPU_SETTINGS,
                                                                          side_by_side=1))
    assert gpu_label(one_at_a_time).endswith("(flash attention on, batch 512)")
    cpu_build = SimpleNamespace(offload=OffloadState(False), load_settings=CPU_SETTINGS)
    assert gpu_label(cpu_build) == "off (CPU-only llama.cpp build)"
    fell_back = SimpleNamespace(offload=OffloadState(True, (), 0, 31), load_settings=CPU_SETTINGS)
    assert gpu_label(fell_back) == "off (0 layers offloaded)"
