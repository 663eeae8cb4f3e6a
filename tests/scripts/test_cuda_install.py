"""`make install` on a CUDA machine: scripts/cuda-arch.sh finds the GPU's architecture, the
Makefile adds it to llama.cpp's build flags, scripts/install-llama.sh builds or takes a wheel.

No GPU here: nvidia-smi and nvcc are small fakes on a PATH that hides the real tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARCHS = "75;80;86;89;90"


def _tools(tmp_path: Path, *, gpus: list[str] | None, nvcc: bool) -> dict[str, str]:
    """An environment whose PATH has a fake nvidia-smi reporting ``gpus`` (compute
    capabilities; None: no nvidia-smi) and a fake nvcc when asked, then the system's basics."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if gpus is not None:
        lines = "".join(f"{cap}\\n" for cap in gpus)
        script = bin_dir / "nvidia-smi"
        script.write_text(f'#!/bin/sh\nprintf "{lines}"\n')
        script.chmod(0o755)
    if nvcc:
        script = bin_dir / "nvcc"
        script.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0'\n")
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"CUDA", "CUDA_ARCHS", "CMAKE_ARGS"}}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    return env


def _arch(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "cuda-arch.sh")],
        env={**env, **extra},
        capture_output=True,
        text=True,
        check=True,
    )


def test_a_gpu_with_nvcc_gives_its_architectures(tmp_path: Path) -> None:
    env = _tools(tmp_path, gpus=["9.0", "8.6", "9.0"], nvcc=True)
    assert _arch(env).stdout.strip() == "86;90"
    assert _arch(env, CUDA_ARCHS="89").stdout.strip() == "89"
    assert _arch(env, CUDA="0").stdout == ""


def test_no_gpu_means_a_cpu_build_unless_cuda_is_asked_for(tmp_path: Path) -> None:
    env = _tools(tmp_path, gpus=None, nvcc=True)
    assert _arch(env).stdout == ""
    assert _arch(env, CUDA="1").stdout.strip() == DEFAULT_ARCHS


def test_a_gpu_without_nvcc_builds_for_the_cpu_and_says_why(tmp_path: Path) -> None:
    done = _arch(_tools(tmp_path, gpus=["9.0"], nvcc=False))
    assert done.stdout == ""
    assert "nvcc is not on PATH" in done.stderr and "wheelhouse/" in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_makefile_adds_cuda_for_the_gpu_found(tmp_path: Path) -> None:
    def flags(env: dict[str, str]) -> str:
        return subprocess.run(
            ["make", "-s", "--no-print-directory", "llama-flags"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    gpu = tmp_path / "gpu"
    gpu.mkdir()
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    on_gpu = flags(_tools(gpu, gpus=["9.0"], nvcc=True))
    on_cpu = flags(_tools(cpu, gpus=None, nvcc=True))
    assert on_gpu.endswith("-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90")
    assert "GGML_CUDA" not in on_cpu
    assert on_gpu.startswith(on_cpu)  # the CPU's portable flags stay


def _install(tmp_path: Path, **env: str) -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-llama.sh"), "/venv/bin/python", "--dry-run"],
        env={**os.environ, "WHEELHOUSE": str(tmp_path / "wheelhouse"), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_wheel_in_the_wheelhouse_is_installed_instead_of_building(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_bytes(b"")
    out = _install(tmp_path, CMAKE_ARGS="-DGGML_CUDA=on")
    assert "+ /venv/bin/python -m pip install -q --no-index --no-deps --find-links" in out
    assert str(house) in out and "--no-cache-dir" not in out


def test_a_cuda_build_skips_the_wheel_cache_and_a_cpu_build_leaves_it_to_pip(
    tmp_path: Path,
) -> None:
    cuda = _install(
        tmp_path, CMAKE_ARGS="-DGGML_AVX2=ON -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90"
    )
    assert "+ /venv/bin/python -m pip install -q --no-cache-dir --no-deps" in cuda
    assert _install(tmp_path, CMAKE_ARGS="-DGGML_AVX2=ON") == ""
