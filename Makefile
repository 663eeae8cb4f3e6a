# Two entry points: `make run` (install, import the bundled sample, open the app)
# and `make test` (install, run the whole suite). Both create .venv in the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch keeps the venv small; sentence-transformers accepts it.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/dpl ingest --sample --quiet
	$(BIN)/dpl-tui

test: install
	@scripts/ensure-wordnet.sh
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/server.py

clean:
	rm -rf $(VENV) build *.egg-info
