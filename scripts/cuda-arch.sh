#!/usr/bin/env bash
# Prints the CUDA architectures to build llama.cpp for (e.g. "90", or "86;90" on a machine with
# two kinds of GPU), or nothing when this is not a CUDA machine. `make install` reads it.
#
#   CUDA=0        never CUDA
#   CUDA=1        CUDA even where no GPU is seen (architectures from $CUDA_ARCHS, else the
#                 GPUs nvidia-smi reports, else 75;80;86;89;90 as scripts/build-cuda.sh builds)
#   CUDA unset    CUDA when nvidia-smi reports a GPU and nvcc is on PATH
#
# Architectures come from nvidia-smi's compute capability (9.0 -> 90); $CUDA_ARCHS overrides.
set -uo pipefail

want="${CUDA:-}"
[[ "$want" == "0" ]] && exit 0

seen=""
if command -v nvidia-smi >/dev/null 2>&1; then
    seen=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
        | tr -d ' .\r' | grep -E '^[0-9]+$' | sort -un | paste -sd ';')
fi

if [[ "$want" != "1" ]]; then
    [[ -n "$seen" ]] || exit 0
    if ! command -v nvcc >/dev/null 2>&1; then
        echo "cuda-arch: a GPU is here but nvcc is not on PATH: building llama.cpp for the CPU" \
            "(install the CUDA toolkit, or use a wheel from scripts/build-cuda.sh in wheelhouse/)" >&2
        exit 0
    fi
fi
echo "${CUDA_ARCHS:-${seen:-75;80;86;89;90}}"
