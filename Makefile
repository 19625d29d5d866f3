# voxgate: the two commands a newcomer needs are `make serve` and `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.DEFAULT_GOAL := help
.PHONY: help serve test lint format bench reliability clean

help:
	@echo "make serve   create $(VENV), install, start the server on 127.0.0.1:8080"
	@echo "make test    install dev dependencies, lint, run the whole test suite"
	@echo "make lint    ruff and mypy"
	@echo "make bench   run the benchmark scenarios in bench/ (about 15 minutes)"
	@echo "make reliability  the long schemathesis and fault-injection run"
	@echo "make clean   remove $(VENV) and caches"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "voxgate needs Python 3.11 or newer"' \
		|| { echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.stamp-install: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.stamp-install

serve: $(VENV)/.stamp-install
	$(BIN)/voxgate serve $(ARGS)

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(VENV)/.stamp-dev
	scripts/ensure-test-deps.sh
	$(MAKE) --no-print-directory lint
	# Most tests wait on real servers, not the CPU: one pytest worker per core
	# (files kept together, so module-scoped servers are started once).
	$(BIN)/pytest -n auto --dist loadfile --durations=10 $(ARGS)

format: $(VENV)/.stamp-dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(VENV)/.stamp-dev
	$(BIN)/python bench/run.py $(ARGS)

reliability: $(VENV)/.stamp-dev
	VOXGATE_RELIABILITY_EXAMPLES=$${VOXGATE_RELIABILITY_EXAMPLES:-2000} $(BIN)/pytest tests/reliability $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts bench/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
