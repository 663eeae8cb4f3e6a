#!/usr/bin/env bash
# Runs one token through the bundled model with the installed llama-cpp-python. A build
# that uses instructions this machine does not allow (a wheel cached from a -march=native
# build on a CPU that advertises AMX tiles it will not run, say) dies with SIGILL; it is
# then rebuilt once without pip's cache, with the portable flags in $CMAKE_ARGS.
set -uo pipefail
python=${1:?usage: check-llama.sh PYTHON}

probe() {
    "$python" - <<'PY'
from models.llama import load_generator
from models import SamplingParams

generator = load_generator(None)
with generator.stream([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=1, seed=1)) as s:
    "".join(s)
PY
}

probe >/dev/null 2>&1
rc=$?
[ "$rc" -eq 0 ] && exit 0
if [ "$rc" -le 128 ]; then
    echo "check-llama: the bundled model did not run (exit $rc):" >&2
    probe >&2
    exit 1
fi
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
echo "check-llama: llama-cpp-python $version died with signal $((rc - 128)) on this CPU;" \
    "rebuilding it (CMAKE_ARGS=$CMAKE_ARGS), about 11 minutes on 2 cores" >&2
"$python" -m pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==$version" || exit 1
if ! probe >/dev/null 2>&1; then
    echo "check-llama: the rebuilt llama-cpp-python still fails here; set CMAKE_ARGS for this" \
        "CPU (see docs/readme/models.md) and run 'make clean install'." >&2
    exit 1
fi
