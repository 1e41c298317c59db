# The two commands a new user runs: `make run` and `make test`. Both set up on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synmlops-installed
STORE ?= ./mlflow
PORT ?= 5500

.PHONY: setup run test test-fast lint legacy-ttp frameworks bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Put the demo federated run into an empty store, then serve on http://localhost:5500.
run: setup
	$(BIN)/synmlops demo --tracking-uri $(STORE) --if-empty --no-serve-hint
	$(BIN)/synmlops serve --store $(STORE) --port $(PORT)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## .venv-ttp: mlflow 1.7.2 on Python 3.7, the original Synergos TTP's client, for its tests.
legacy-ttp:
	bash scripts/legacy-ttp.sh

## .venv-fl: Flower and NVIDIA FLARE (the [flower,nvflare] extras), for the adapters' tests.
frameworks:
	bash scripts/frameworks-venv.sh

## Every test: lint and types, then the suite (real servers, PostgreSQL, Chromium), in
## parallel: each worker takes whole modules (--dist loadfile), longest first as timed in
## tests/durations.json (conftest.py orders them; --no-loadscope-reorder keeps that order), with
## its own ports, databases and folders. Most tests wait on servers and the browser, so 3
## workers suit 2 cores.
TEST_WORKERS ?= 3
test: setup lint legacy-ttp frameworks
	bash scripts/services.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## The inner loop: the tests that start no process (no server, CLI, browser), in a few minutes.
test-fast: setup
	bash scripts/services.sh
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not process"

bench: setup frameworks
	bash scripts/services.sh
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.legacy_bench
	$(BIN)/python -m benchmarks.logs_bench
	$(BIN)/python -m benchmarks.system_bench
	$(BIN)/python -m benchmarks.study_bench
	$(BIN)/python -m benchmarks.scale_bench
	$(BIN)/python -m benchmarks.serve_start_bench
	PYTHONPATH=src .venv-fl/bin/python -m benchmarks.frameworks_bench
	PYTHONPATH=src .venv-fl/bin/python -m benchmarks.flower_simulation_bench

## Property-based campaigns with their long profile (HYPOTHESIS_PROFILE=fuzz), one line each.
fuzz: setup
	bash scripts/services.sh
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider -q -s --timeout 3600 tests/test_gelf_fuzz.py
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider -q --timeout 3600 tests/test_catalog_fuzz.py
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider -q --timeout 3600 tests/test_study_types.py -k scalar

clean:
	rm -rf $(VENV) .venv-fl build *.egg-info .pytest_cache .mypy_cache .ruff_cache
