#!/usr/bin/env bash
# dpl tune's training path on a GPU machine, in one short run: training tokens/s and peak
# memory through models.training on CUDA (bfloat16), and a briefly trained adapter exported
# with its transformers-side logit changes, to be checked against llama.cpp elsewhere
# (benchmarks/tune_check.py). Needs torch, transformers and peft on the machine (a GPU image
# has them); llama.cpp is not needed there.
#
# Prepare here (the model and the gguf wheel travel in .gpu-a/ and .gpu-b/, ignored by git):
#   mkdir -p .gpu-a .gpu-b && printf '/.gpu-a/\n/.gpu-b/\n' >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .gpu-a gguf
#   split -b 48M "$(.venv/bin/python -c 'from models.registry import default_gguf_path as p; print(p())')" .gpu-a/model.part-
#   mv .gpu-a/model.part-ab .gpu-b/
#   .venv/bin/python -c 'from benchmarks.tune_ids import write; write(".gpu-a/ids.json")'
# Send .gpu-a in one call and .gpu-b in the next (each under a 64 MiB transfer limit; a
# folder that is sent replaces the one there), then run this in the second.
# Environment: OUT (default bench-out/tune-gpu).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/bench-out/tune-gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-a/*.whl
export PYTHONPATH="/tmp/site:$REPO" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
MODEL=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf
cat .gpu-a/model.part-* .gpu-b/model.part-* > "$MODEL"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/smi.txt"
cp .gpu-a/ids.json "$OUT/ids.json"
python3 -m benchmarks.tune --training-only --steps 20 --batches 1,8,16 --model "$MODEL" \
    --out "$OUT/tune-gpu.md" --check-ids .gpu-a/ids.json --check-out "$OUT" 2>&1 | tee "$OUT/log.txt"
