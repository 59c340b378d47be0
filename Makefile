# curfew: `make run` starts the daemon on the embedded default, `make test` runs lint, types and tests.
# The interpreter the virtualenv is made from: the distribution's /usr/bin/python3 when it is
# 3.11 or newer and can make one (Debian and Ubuntu build it with PGO and LTO: `lab simulate`
# spends 6-15% less CPU on it than on a default source build such as pyenv's, see
# docs/benchmarks.md), else python3 from PATH. `make PYTHON=/path/to/python3` overrides.
DISTRO_PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip, venv; print(sys.version_info >= (3, 11))' 2>/dev/null)
PYTHON ?= $(if $(filter True,$(DISTRO_PYTHON)),/usr/bin/python3,python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'oonidata==0.3.0'  # its pins clash with ours: pyproject.toml
	$(BIN)/python -m compileall -q probe  # bytecode for every process, even under PYTHONDONTWRITEBYTECODE
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
