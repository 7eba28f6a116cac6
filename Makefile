# Two commands on a fresh machine: `make run` and `make test` (both create the venv when needed).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# TFX 1.16 needs Python 3.10: take the first python3.10 that really is 3.10 (pyenv shims included).
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do if $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then echo $$p; break; fi; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RETAILREC := TF_USE_LEGACY_KERAS=1 $(VENV)/bin/retailrec

RAW ?= data/generated/default
OUTPUT ?= output/default
PRESET ?= default

.PHONY: help setup run data test lint format bench clean browser

help:
	@echo "make run    - set up, generate the default data if absent, run the pipeline, print results"
	@echo "make test   - set up, run the linter and the whole test suite"
	@echo "make setup  - create $(VENV) with python3.10 and install the pinned set (requirements.lock)"
	@echo "make bench  - run the benchmark scripts (minutes; see docs/benchmarks.md)"

setup: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -n "$(PYTHON310)" || { echo "error: python3.10 not found; TFX 1.16 needs Python 3.10" >&2; exit 1; }
	test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.2
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

data: $(STAMP)
	@if [ -f $(RAW)/events.csv ]; then echo "using existing data in $(RAW)"; \
	else $(RETAILREC) generate --out $(RAW) --preset $(PRESET); fi

run: data
	$(RETAILREC) run --raw $(RAW) --output $(OUTPUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The report's browser test needs Debian's chromium: installed here when absent and possible.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: chromium not installed; the report's browser test will be skipped"; }

test: lint browser
	TF_USE_LEGACY_KERAS=1 $(PY) -m pytest -q

bench: $(STAMP)
	TF_USE_LEGACY_KERAS=1 $(PY) benchmarks/run_all.py

clean:
	rm -rf output .pytest_cache .ruff_cache
