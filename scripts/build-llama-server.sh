#!/usr/bin/env bash
# Builds llama.cpp's HTTP server (llama-server) into the venv from the llama.cpp sources
# vendored in the installed llama-cpp-python's sdist, so the server and the Python binding
# run the same llama.cpp. Static, CPU flags from $CMAKE_ARGS (the Makefile exports them),
# no web UI, no curl or OpenSSL. A stamp per version and $CMAKE_ARGS skips the build (4 to 10
# minutes on 2 cores) when it is already done; other flags build it again.
set -euo pipefail
python=${1:?usage: build-llama-server.sh PYTHON}

venv=$(cd "$(dirname "$python")/.." && pwd)
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
binary=$venv/bin/llama-server
stamp=$venv/.llama-server-$version
[ -x "$binary" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${CMAKE_ARGS:-}" ] && exit 0
if ! command -v cmake >/dev/null; then
    echo "build-llama-server: cmake is not on the PATH; install it (apt install cmake," \
        "or $python -m pip install cmake) and run make test again" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llama-server.XXXXXX")
log=$tmp/build.log
step=""
on_exit() {
    rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$log" >&2 2>/dev/null || true
        echo "build-llama-server: $step failed (exit $rc) for llama-cpp-python $version;" \
            "no llama-server installed" >&2
    fi
    rm -rf "$tmp" "$binary.tmp"
}
trap on_exit EXIT

start=$SECONDS
echo "build-llama-server: building llama-server from llama-cpp-python $version's llama.cpp" \
    "(4 to 10 minutes on 2 cores)"

step="downloading the sdist (pip download)"
"$python" -m pip download -q --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$tmp/sdist" >"$log" 2>&1

step="extracting vendor/llama.cpp"
mkdir "$tmp/src"
tar -xzf "$tmp/sdist/llama_cpp_python-$version.tar.gz" -C "$tmp/src" --strip-components=3 \
    --wildcards '*/vendor/llama.cpp/*' >"$log" 2>&1

# The sdist has no built web UI: LLAMA_BUILD_UI=OFF skips npm and LLAMA_USE_PREBUILT_UI=OFF
# skips the Hugging Face download, so the server embeds an empty UI (the API is unchanged).
step="configuring llama.cpp (cmake)"
read -ra extra <<<"${CMAKE_ARGS:-}"
# $CMAKE_ARGS first so that the options below win (build-cuda.sh's turn the server off).
cmake -S "$tmp/src" -B "$tmp/build" ${extra[@]+"${extra[@]}"} \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$log" 2>&1

step="compiling llama-server"
nice -n 10 cmake --build "$tmp/build" --target llama-server -j"$(nproc)" >"$log" 2>&1

step="installing $binary"
"$tmp/build/bin/llama-server" --version >"$log" 2>&1
cp "$tmp/build/bin/llama-server" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
rm -f "$venv"/.llama-server-*
echo "${CMAKE_ARGS:-}" >"$stamp"
echo "build-llama-server: installed $binary (llama-cpp-python $version," \
    "$(du -h "$binary" | cut -f1)) in $((SECONDS - start)) s"
