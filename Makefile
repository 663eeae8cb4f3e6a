# Two entry points: `make run` (install, import the bundled sample, open the app)
# and `make test` (install, run the whole suite). Both create .venv in the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp is compiled for x86-64 machines with AVX2 in general, not for this CPU alone: a
# -march=native build can use instructions a virtual machine advertises but refuses (AMX).
# Set CMAKE_ARGS yourself to build otherwise (CUDA: scripts/build-cuda.sh).
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
endif
# On a CUDA machine (a GPU nvidia-smi reports and nvcc on PATH, or CUDA=1; CUDA=0 never) it is
# built with CUDA for that GPU's architecture only; a wheel in wheelhouse/ is used instead.
CUDA_ARCHS := $(shell scripts/cuda-arch.sh)
ifneq ($(CUDA_ARCHS),)
LLAMA_CMAKE_ARGS += -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS)
endif
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)

.PHONY: install run test lint bench clean llama-flags

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch keeps the venv small; sentence-transformers accepts it.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	scripts/install-llama.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	scripts/check-llama.sh $(BIN)/python
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/dpl ingest --sample --quiet
	$(BIN)/dpl-tui

# The server tests run llama.cpp's own llama-server, built once per venv and version from
# the same llama.cpp sources as llama-cpp-python (4 to 10 minutes on 2 cores), with CMAKE_ARGS.
test: install
	@scripts/ensure-wordnet.sh
	@scripts/build-llama-server.sh $(BIN)/python
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.generation
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.server

# The flags llama.cpp is built with here (llama-cpp-python and llama-server).
llama-flags:
	@echo '$(CMAKE_ARGS)'

clean:
	rm -rf $(VENV) build *.egg-info
