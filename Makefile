# The two commands of the Quick start are `make demo` and `make test`; both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite

.PHONY: install worker-venv demo test unit integration chaos bench lint clean

install: $(STAMP) $(AZURITE)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Python 3.13 with the Python worker's indexing library (azure-functions-runtime), for
# tests/worker: found as PREPOST_WORKER_PYTHON, python3.13 on the PATH, or pyenv's 3.13.
worker-venv: $(STAMP)
	$(BIN)/python -m tests.worker.worker_venv

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

demo: install
	$(BIN)/prepost demo

test: install worker-venv
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/functional

integration: install
	$(BIN)/python -m pytest tests/integration tests/local tests/simulator

# 20 maintenance windows under storage faults, ARM faults, crashes and disordered events (docs/chaos.md);
# options through CHAOS_ARGS, e.g. make chaos CHAOS_ARGS="--seed 2 --json chaos.json".
CHAOS_ARGS ?=
chaos: install
	$(BIN)/python -m prepost.cli chaos $(CHAOS_ARGS)

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .
	@test -x $(VENV)/checkov/bin/checkov || ($(PYTHON) -m venv $(VENV)/checkov && $(VENV)/checkov/bin/pip install --quiet checkov==3.3.30)
	$(VENV)/checkov/bin/checkov -d infra --framework bicep --compact --quiet --skip-download

clean:
	rm -rf $(VENV) .venv-worker .venv-worker.lock node_modules .prepost .pytest_cache
