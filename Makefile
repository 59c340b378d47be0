# curfew: `make run` starts the daemon on the embedded default, `make test` runs lint, types and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'oonidata==0.3.0'  # its pins clash with ours: pyproject.toml
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/curfew run --config config/curfew.yaml

lint: $(STAMP)
	$(BIN)/ruff check probe tests bench migrations
	$(BIN)/ruff format --check probe tests bench migrations
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/probe_cpu.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
