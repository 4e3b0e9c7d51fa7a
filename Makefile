# The two commands of the Quick start are `make demo` and `make test`; both install what they need.
# Python 3.11 is what Azure runs the app on; any later 3.x works locally.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite

.PHONY: install worker-venv lock demo test unit integration chaos bench lint lint-infra clean

install: $(STAMP) $(AZURITE)

# requirements.txt and requirements-dev.txt are lock files with hashes (make lock): pip checks
# every download against them. The editable install of prepost itself adds no dependency.
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Python 3.13 with the Python worker's indexing library (azure-functions-runtime), for
# tests/worker: found as PREPOST_WORKER_PYTHON, python3.13 on the PATH, or pyenv's 3.13.
# Installed from the hashed locks requirements-worker.txt and requirements-worker-presettlement.txt.
worker-venv: $(STAMP)
	$(BIN)/python -m tests.worker.worker_venv

# npm ci empties node_modules first: when node_modules is a link to an install other checkouts
# share, reinstalling through it would pull that install from under them, so it is left alone.
$(AZURITE): package.json package-lock.json
	@if [ -L node_modules ]; then echo "node_modules is a link: not reinstalling it"; \
	else npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; fi

# Resolve requirements.in (the app's pins) and requirements-dev.in into the hashed lock files,
# for Python 3.11 on every platform, and requirements-worker.in (tests/worker) for Python 3.13.
# Versions already in a lock are kept; upgrade one package with LOCK_ARGS="--upgrade-package NAME",
# everything with LOCK_ARGS=--upgrade.
UV_VERSION := 0.13.8
UV := $(VENV)/uv/bin/uv
LOCK_ARGS ?=
LOCK_COMMON := --generate-hashes --universal --custom-compile-command "make lock" --quiet $(LOCK_ARGS)
LOCK_FLAGS := $(LOCK_COMMON) --python-version 3.11
WORKER_LOCK_FLAGS := $(LOCK_COMMON) --python-version 3.13
$(UV):
	$(PYTHON) -m venv $(VENV)/uv
	$(VENV)/uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

lock: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) requirements.in --output-file requirements.txt
	$(UV) pip compile $(LOCK_FLAGS) requirements-dev.in --constraint requirements.txt --output-file requirements-dev.txt
	$(UV) pip compile $(WORKER_LOCK_FLAGS) requirements-worker.in --output-file requirements-worker.txt
	$(UV) pip compile $(WORKER_LOCK_FLAGS) --no-deps requirements-worker-presettlement.in --output-file requirements-worker-presettlement.txt

demo: install
	$(BIN)/prepost demo

# The tests (ruff runs as one of them), then the Bicep scan (docs/deploy.md: about 7 s, plus
# about 50 s once to install checkov).
test: install worker-venv
	$(BIN)/python -m pytest
	@$(MAKE) --no-print-directory lint-infra

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
	@$(MAKE) --no-print-directory lint-infra

# checkov lives in its own environment: it pins libraries the app also uses, at other versions.
# PYTHONHASHSEED is fixed so that no check whose verdict depends on set order can flip between
# runs (CKV_AZURE_43 did; it is now suppressed with its reason in storage.bicep).
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

lint-infra: $(CHECKOV)
	PYTHONHASHSEED=0 $(CHECKOV) -d infra --framework bicep --compact --quiet --skip-download

clean:
	rm -rf $(VENV) .venv-worker .venv-worker.lock node_modules .prepost .pytest_cache
