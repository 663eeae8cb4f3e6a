#!/usr/bin/env bash
# Installs llama-cpp-python into a venv before the rest of dpl, the way this machine needs it:
#   - a wheel in wheelhouse/ (from scripts/build-cuda.sh) is installed as it is, no build;
#   - CMAKE_ARGS with -DGGML_CUDA=on (`make install` on a CUDA machine, see scripts/cuda-arch.sh)
#     builds it without pip's wheel cache, which would hand back a CPU build made earlier;
#   - otherwise nothing happens here: `pip install -e .` installs it as a dependency.
# Usage: scripts/install-llama.sh PYTHON [--dry-run]
set -euo pipefail
python=${1:?usage: install-llama.sh PYTHON [--dry-run]}
dry_run=0
[[ "${2:-}" == "--dry-run" ]] && dry_run=1
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheelhouse="${WHEELHOUSE:-$repo/wheelhouse}"

run() {
    echo "+ $*"
    [[ $dry_run -eq 1 ]] || "$@"
}

shopt -s nullglob
wheels=("$wheelhouse"/llama_cpp_python-*.whl)
if [[ ${#wheels[@]} -gt 0 ]]; then
    echo "install-llama: using the prebuilt wheel in $wheelhouse (${wheels[-1]##*/})"
    run "$python" -m pip install -q --no-index --no-deps --find-links "$wheelhouse" llama-cpp-python
elif [[ " ${CMAKE_ARGS:-} " == *"-DGGML_CUDA=on"* ]]; then
    echo "install-llama: building llama-cpp-python with CUDA (CMAKE_ARGS=$CMAKE_ARGS); one" \
        "GPU architecture takes minutes on a workstation, much longer on 2 cores"
    run "$python" -m pip install -q --no-cache-dir --no-deps "llama-cpp-python>=0.3.7"
fi
