#!/usr/bin/env bash
# Build a llama-cpp-python wheel with CUDA offload into wheelhouse/.
#
# The wheel is tagged py3-none-linux_x86_64 (any Python 3), compiled here with nvcc; no GPU
# is needed to build it. Install it on the GPU machine with
#     pip install --no-index --find-links wheelhouse llama-cpp-python
#
# Usage: scripts/build-cuda.sh [options]
#   --archs LIST     CUDA architectures, ';'-separated (default: $ARCHS or 75;80;86;89;90:
#                    Turing, Ampere, Ada, Hopper). CUDA 13 builds for 75 and newer only.
#   --h100           shorthand for --archs 90 (H100 / H200); also keeps the wheel small
#   --python VER|EXE Python that runs the build (default 3.12 from pyenv, else python3)
#   --version VER    llama-cpp-python version (default: the one in .venv, else 0.3.36)
#   --sdist FILE     build from a local sdist instead of downloading it
#   --jobs N         parallel compile jobs (default: $JOBS or 2)
#   --out DIR        where the wheel goes (default: wheelhouse)
#   --with-deps      also download the wheels scripts/gpu-check.sh installs offline (into
#                    DIR/deps)
#   --dry-run        print what would run, run nothing
#   -h, --help       this text
set -euo pipefail

ARCHS="${ARCHS:-75;80;86;89;90}"
PYTHON_WANTED="3.12"
VERSION=""
SDIST=""
JOBS="${JOBS:-2}"
OUT_DIR="wheelhouse"
WITH_DEPS=0
DRY_RUN=0
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build/cuda}"

# Runtime dependencies of llama-cpp-python and of the GPU tests and benchmarks (gguf and
# pyyaml: benchmarks/synthetic_gguf.py writes the synthetic 7B on the GPU machine).
GPU_CHECK_DEPS=(numpy typing-extensions diskcache jinja2 jsonschema typer platformdirs
                sqlite-utils pytest pytest-timeout pyyaml gguf)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "build-cuda: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --archs) ARCHS="${2:?--archs needs a value}"; shift 2 ;;
        --h100) ARCHS="90"; shift ;;
        --python) PYTHON_WANTED="${2:?--python needs a value}"; shift 2 ;;
        --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
        --sdist) SDIST="${2:?--sdist needs a file}"; shift 2 ;;
        --jobs) JOBS="${2:?--jobs needs a value}"; shift 2 ;;
        --out) OUT_DIR="${2:?--out needs a folder}"; shift 2 ;;
        --with-deps) WITH_DEPS=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ "$ARCHS" =~ ^[0-9]+[af]?(-real|-virtual)?(\;[0-9]+[af]?(-real|-virtual)?)*$ ]] \
    || die "--archs must look like '80;86;90', got '$ARCHS'"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, got '$JOBS'"

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

find_python() {
    local wanted="$1" candidate
    if [[ "$wanted" == */* ]]; then
        [[ -x "$wanted" ]] || die "Python '$wanted' is not an executable"
        echo "$wanted"; return
    fi
    candidate="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$wanted".* 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$candidate" && -x "$candidate/bin/python" ]]; then
        echo "$candidate/bin/python"; return
    fi
    if command -v "python$wanted" >/dev/null 2>&1; then command -v "python$wanted"; return; fi
    echo "build-cuda: Python $wanted not found (pyenv or python$wanted); using python3" >&2
    command -v python3 || die "no python3 found"
}

PY="$(find_python "$PYTHON_WANTED")"
if [[ -z "$VERSION" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then
        VERSION="$("$REPO/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || true)"
    fi
    VERSION="${VERSION:-0.3.36}"
fi

# Find the toolkit: $CUDA_HOME, else the folder above nvcc, else /usr/local/cuda (an nvcc on
# PATH may be a wrapper script, so prefer the toolkit's own nvcc).
NVCC="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [[ -z "${CUDA_HOME:-}" ]]; then
    for candidate in "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda; do
        if [[ -e "$candidate/include/cuda_runtime.h" ]]; then CUDA_HOME="$candidate"; break; fi
    done
fi
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if [[ -z "${CUDACXX:-}" && -x "$CUDA_HOME/bin/nvcc" ]]; then NVCC="$CUDA_HOME/bin/nvcc"; fi
if [[ ! -x "$NVCC" ]]; then
    [[ $DRY_RUN -eq 1 ]] || die "nvcc not found (set CUDACXX or put the CUDA toolkit's bin on PATH)"
    echo "build-cuda: warning: nvcc not found at $NVCC" >&2
fi
CUDA_RELEASE="$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p' || true)"
CUDA_RELEASE="${CUDA_RELEASE:-13.0}"
CUDA_MAJOR="${CUDA_RELEASE%%.*}"

echo "build-cuda: llama-cpp-python $VERSION, CUDA $CUDA_RELEASE ($NVCC), architectures $ARCHS"
echo "build-cuda: Python $PY, $JOBS jobs, wheel into $OUT_DIR"

VENV="$BUILD_DIR/venv"
run "$PY" -m venv "$VENV"
run "$VENV/bin/python" -m pip install -q --upgrade pip

CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCHS -DCMAKE_CUDA_COMPILER=$NVCC"
CMAKE_ARGS+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"

# ggml's CUDA memory pool links the driver library (libcuda.so); a machine without a GPU
# driver and without the toolkit's stub has none, so build with the plain pool instead.
if [[ ! -e "$CUDA_HOME/lib64/stubs/libcuda.so" ]] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
    echo "build-cuda: no libcuda.so (driver or stub) here; building with GGML_CUDA_NO_VMM=ON"
    CMAKE_ARGS+=" -DGGML_CUDA_NO_VMM=ON"
fi

# The toolkit here ships nvcc and cudart but not cuBLAS, which ggml-cuda links against.
# NVIDIA's nvidia-cublas wheel carries its headers and libraries; point CMake at them.
if [[ ! -e "$CUDA_HOME/include/cublas_v2.h" ]]; then
    echo "build-cuda: cuBLAS not in $CUDA_HOME; taking it from the nvidia-cublas wheel"
    run "$VENV/bin/python" -m pip install -q "nvidia-cublas==$CUDA_RELEASE.*"
    OVERLAY="$BUILD_DIR/cublas"
    if [[ $DRY_RUN -eq 1 ]]; then
        CUBLAS="<site-packages>/nvidia/cu$CUDA_MAJOR"
    else
        CUBLAS="$("$VENV/bin/python" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("nvidia")
roots = [pathlib.Path(p) for p in spec.submodule_search_locations]
for root in roots:
    for header in root.rglob("cublas_v2.h"):
        print(header.parent.parent)
        raise SystemExit(0)
raise SystemExit("cublas_v2.h not found in the nvidia-cublas wheel")
EOF
)"
    fi
    run mkdir -p "$OVERLAY/lib"
    for lib in cublas cublasLt; do
        if [[ $DRY_RUN -eq 1 ]]; then
            run ln -sf "$CUBLAS/lib/lib$lib.so.$CUDA_MAJOR" "$OVERLAY/lib/lib$lib.so"
        else
            target="$(ls "$CUBLAS"/lib/lib"$lib".so.* | sort -V | head -n 1)"
            run ln -sf "$target" "$OVERLAY/lib/lib$lib.so"
        fi
    done
    CMAKE_ARGS+=" -DCMAKE_LIBRARY_PATH=$OVERLAY/lib"
    CMAKE_ARGS+=" -DCMAKE_CUDA_FLAGS=-I$CUBLAS/include -DCMAKE_CXX_FLAGS=-I$CUBLAS/include"
fi

SOURCE="llama-cpp-python==$VERSION"
[[ -z "$SDIST" ]] || SOURCE="$SDIST"
run mkdir -p "$OUT_DIR"
run env CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" CUDACXX="$NVCC" \
    "$VENV/bin/python" -m pip wheel --no-deps --no-binary llama-cpp-python \
    -w "$OUT_DIR" "$SOURCE"

if [[ $WITH_DEPS -eq 1 ]]; then
    # In a folder of their own, so the wheel and its dependencies can travel separately.
    run "$VENV/bin/python" -m pip download -q --only-binary=:all: -d "$OUT_DIR/deps" "${GPU_CHECK_DEPS[@]}"
fi

if [[ $DRY_RUN -eq 1 ]]; then
    echo "build-cuda: dry run, nothing built"
    exit 0
fi

WHEEL="$(ls -t "$OUT_DIR"/llama_cpp_python-"$VERSION"-*.whl | head -n 1)"
if ! "$VENV/bin/python" -m zipfile -l "$WHEEL" | grep -q 'libggml-cuda'; then
    die "$WHEEL has no libggml-cuda: the CUDA backend was not built (see the log above)"
fi
# The build stores every library six times (no symlinks in wheels); keep what is loaded.
run "$VENV/bin/python" "$REPO/scripts/slim-wheel.py" "$WHEEL"
SIZE_MIB=$(( $(stat -c %s "$WHEEL") / 1048576 ))
cat > "$OUT_DIR/BUILD-INFO.txt" <<EOF
wheel: $(basename "$WHEEL") ($SIZE_MIB MiB)
llama-cpp-python: $VERSION
CUDA: $("$NVCC" --version | tail -n 1)
architectures: $ARCHS
built with: $("$PY" --version 2>&1) on $(uname -srm), $(date -u +%Y-%m-%dT%H:%MZ)
runtime needs: an NVIDIA driver for CUDA $CUDA_MAJOR, libcudart.so.$CUDA_MAJOR and libcublas.so.$CUDA_MAJOR
EOF
cat "$OUT_DIR/BUILD-INFO.txt"
if [[ $SIZE_MIB -gt 60 ]]; then
    # One transfer to the GPU machines used here is capped at 64 MiB.
    echo "build-cuda: note: the wheel is $SIZE_MIB MiB; build fewer architectures (--h100) for a smaller one"
fi
