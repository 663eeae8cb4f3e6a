"""Whether generation runs on a GPU, told truthfully.

Three separate facts: was llama.cpp built with GPU offload, is there a GPU the
driver can see (name and memory from ``nvidia-smi`` when it is installed), and
how many layers a loaded model actually put on it (llama.cpp reports that while
loading; ``models.llama`` records it). The load settings that go with where the model
runs (prompt batch size, flash attention, prompt re-reading) are chosen here too, in
``choose_load_settings``, so ``dpl models`` can show them without loading anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace

from .errors import ModelLoadError


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    memory_used_mib: int | None = None
    memory_total_mib: int | None = None


@dataclass(frozen=True)
class OffloadState:
    """What ``dpl models`` and the app's status line show about GPU offload."""

    built_with_gpu: bool
    """llama.cpp was compiled with a GPU backend (CUDA, Metal, Vulkan, ...)."""
    devices: tuple[GpuDevice, ...] = ()
    """GPUs the NVIDIA driver reports; empty when there are none or nvidia-smi is absent."""
    layers_offloaded: int = 0
    layers_total: int = 0
    """Offloadable layers: the transformer blocks plus the output layer."""
    measured: bool = False
    """True when the layer count comes from a loaded model, False when it is the plan."""
    device_name: str = "CPU"
    """The device llama.cpp used (or will use)."""

    @property
    def active(self) -> bool:
        return self.built_with_gpu and self.layers_offloaded > 0

    @property
    def vram(self) -> str:
        dev = self.devices[0] if self.devices else None
        if dev is None or dev.memory_total_mib is None:
            return ""
        return f"{dev.memory_used_mib or 0:,}/{dev.memory_total_mib:,} MiB"

    def summary(self) -> str:
        """One line, e.g. 'GPU offload: 31/31 layers on NVIDIA H100 (VRAM 1,020/81,559 MiB)'."""
        if not self.built_with_gpu:
            return "GPU offload: off (llama.cpp built without GPU support; CPU only)"
        if not self.active:
            where = f"; GPU present: {self.devices[0].name}" if self.devices else ""
            return f"GPU offload: off (0 layers{where})"
        planned = "" if self.measured else " (planned)"
        vram = f" (VRAM {self.vram})" if self.vram else ""
        total = f"/{self.layers_total}" if self.layers_total else ""
        return (
            f"GPU offload: {self.layers_offloaded}{total} layers on {self.device_name}"
            f"{planned}{vram}"
        )


CPU_PROMPT_BATCH = 128
"""Prompt tokens per batch on the CPU: a cancel is checked between batches, and 128 reads a
prompt as fast as llama.cpp's default of 512 there."""

GPU_PROMPT_BATCH = 512
"""Prompt tokens per batch when layers are offloaded: a batch takes milliseconds on a GPU, so
a cancel still lands at once, and reading is faster than in batches of 128."""


SIDE_BY_SIDE = 8
"""JSON calls decoded together with layers on a GPU: the eight differences of a target (k = 8
comparison items). On the CPU they run one after another: on two cores with the bundled model
a decode step of eight tokens costs about six single steps, and reading the prompts (the same
work either way) dominates, so side by side measured between 0.79x and 1.14x there
(``benchmarks/side_by_side.py``)."""

MAX_SIDE_BY_SIDE = 64
"""The most sequences one llama.cpp context takes here (its own limit is 256)."""


SIDE_BY_SIDE_ENV = "DPL_SIDE_BY_SIDE"


def env_count(name: str, what: str, fix: str, high: int | None = None) -> int | None:
    """The whole number in ``$name`` (at least 1, at most ``high``), or None when it is unset.

    Raises ModelLoadError naming the value, ``what`` it should be, and ``fix``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1 or (high is not None and count > high):
        raise ModelLoadError(f"{name}={value!r} is not {what}: {fix}")
    return count


def default_side_by_side() -> int | None:
    """``$DPL_SIDE_BY_SIDE`` when set (1: JSON calls one after another), else None (the
    device's choice). Raises ModelLoadError for a value below 1 or not a number."""
    return env_count(
        SIDE_BY_SIDE_ENV,
        "a number of calls side by side",
        f"set it to a whole number from 1 (one after another) to {MAX_SIDE_BY_SIDE}, or unset "
        "it to leave it to the device.",
        high=MAX_SIDE_BY_SIDE,
    )


@dataclass(frozen=True)
class LoadSettings:
    """How llama.cpp is set up for where the model runs (see ``choose_load_settings``)."""

    n_batch: int
    """Prompt tokens llama.cpp reads per call, and between two checks for cancellation."""
    n_ubatch: int
    """Tokens per physical batch; equal to ``n_batch``, so one call is one batch."""
    flash_attn: bool
    reread_prompt: bool
    """Read the whole prompt on every call instead of reusing the prefix the context already
    holds: on a GPU a reused prefix changes the batch shapes, and with them the numbers, so the
    same seed would not give the same text."""
    side_by_side: int = 1
    """JSON calls decoded together in their own context (``models.side_by_side``); with 1 they
    run there one after another."""

    def summary(self) -> str:
        """One line, e.g. '512-token prompt batches, flash attention on, prompt re-read per
        call'."""
        parts = [
            f"{self.n_batch}-token prompt batches",
            f"flash attention {'on' if self.flash_attn else 'off'}",
        ]
        if self.reread_prompt:
            parts.append("prompt re-read per call")
        if self.side_by_side > 1:
            parts.append(f"{self.side_by_side} JSON calls side by side")
        return ", ".join(parts)


CPU_SETTINGS = LoadSettings(
    CPU_PROMPT_BATCH, CPU_PROMPT_BATCH, flash_attn=False, reread_prompt=False
)
GPU_SETTINGS = LoadSettings(
    GPU_PROMPT_BATCH,
    GPU_PROMPT_BATCH,
    flash_attn=True,
    reread_prompt=True,
    side_by_side=SIDE_BY_SIDE,
)


def choose_load_settings(
    offloading: bool, flash_attn: bool | None = None, side_by_side: int | None = None
) -> LoadSettings:
    """The settings for a model that will (``offloading``: n_gpu_layers != 0 on a GPU build)
    or will not put layers on a GPU; an explicit ``flash_attn`` overrides the choice of
    flash attention and nothing else, an explicit ``side_by_side`` the JSON calls decoded
    together (``SIDE_BY_SIDE`` on a GPU, one after another on the CPU).

    On a GPU: flash attention and 512-token prompt batches. With 128-token batches and flash
    attention off, a prompt of about 3k tokens aborted the whole process on an NVIDIA H200
    (CUDA 'illegal instruction'); either change alone avoided it, and both were faster.
    The prompt is re-read on every call, so the same seed gives the same text. On the CPU:
    128-token batches, flash attention off, the cached prompt prefix reused."""
    chosen = GPU_SETTINGS if offloading else CPU_SETTINGS
    if side_by_side is not None and side_by_side != chosen.side_by_side:
        chosen = replace(chosen, side_by_side=side_by_side)
    if flash_attn is None or flash_attn == chosen.flash_attn:
        return chosen
    return replace(chosen, flash_attn=flash_attn)


def planned_settings(state: OffloadState) -> LoadSettings:
    """The settings a model with this (planned) offload gets when loaded with defaults."""
    return choose_load_settings(state.active, side_by_side=default_side_by_side())


def supports_gpu_offload() -> bool:
    """True when the installed llama.cpp can offload layers to a GPU (imports llama_cpp)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def nvidia_devices(timeout_s: float = 5.0) -> tuple[GpuDevice, ...]:
    """GPUs from ``nvidia-smi``; empty when it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=index,name,memory.used,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    devices = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        devices.append(
            GpuDevice(
                int(parts[0]) if parts[0].isdigit() else len(devices),
                parts[1],
                _int(parts[2]),
                _int(parts[3]),
            )
        )
    return tuple(devices)


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def default_gpu_layers() -> int:
    """-1 (every layer) when llama.cpp was built with GPU offload, else 0."""
    return -1 if supports_gpu_offload() else 0


def planned_state(block_count: int, n_gpu_layers: int | None = None) -> OffloadState:
    """The offload a model with ``block_count`` layers would get, without loading it."""
    built = supports_gpu_offload()
    devices = nvidia_devices() if built else ()
    total = block_count + 1 if block_count else 0
    wanted = (-1 if built else 0) if n_gpu_layers is None else n_gpu_layers
    if not built or wanted == 0:
        layers = 0
    elif wanted < 0:
        layers = total
    else:
        layers = min(wanted, total) if total else wanted
    name = devices[0].name if devices and layers else ("GPU" if layers else "CPU")
    return OffloadState(built, devices, layers, total, measured=False, device_name=name)
