"""scripts/gpu-check.sh --dry-run prints every command the GPU run would make, without a GPU:
the tests, the benchmarks on the bundled model, and the synthetic 7B made once, then reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path) -> str:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "SYN7B": str(tmp_path / "syn7b.gguf"),
        "WHEELHOUSE": str(tmp_path / "wheelhouse"),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "results in" in done.stdout, done.stderr
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    return done.stdout


def test_the_dry_run_shows_the_tests_and_the_benchmarks_on_both_models(tmp_path: Path) -> None:
    out = dry_run(tmp_path)
    assert "tests/models/test_gpu.py" in out
    assert "tests/models/test_side_by_side.py" in out
    assert f"-m benchmarks.gpu --reps 3 --pipeline-cpu --out {tmp_path}/out/gpu.md" in out
    assert (
        f"-m benchmarks.side_by_side --out {tmp_path}/out/side-by-side.md "
        f"--json {tmp_path}/out/side-by-side.json"
    ) in out
    assert (
        f"-m benchmarks.generation --reps 3 --generation-only --out {tmp_path}/out/generation.md"
    ) in out
    assert f"-m benchmarks.synthetic_gguf {tmp_path}/syn7b.gguf" in out
    assert (
        f"-m benchmarks.generation --model {tmp_path}/syn7b.gguf --reps 3 --generation-only "
        f"--out {tmp_path}/out/generation-7b.md"
    ) in out
    assert (
        f"-m benchmarks.side_by_side --model {tmp_path}/syn7b.gguf "
        f"--out {tmp_path}/out/side-by-side-7b.md --json {tmp_path}/out/side-by-side-7b.json"
    ) in out
    assert " gguf\n" in out  # installed for the synthetic model


def test_a_synthetic_model_already_there_is_reused(tmp_path: Path) -> None:
    (tmp_path / "syn7b.gguf").write_bytes(b"GGUF")
    out = dry_run(tmp_path)
    assert f"reusing {tmp_path}/syn7b.gguf" in out
    assert "benchmarks.synthetic_gguf" not in out
    assert f"--model {tmp_path}/syn7b.gguf" in out
