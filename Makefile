# make demo — see onwatch investigate a simulated incident (SQLite, terminal rendering, no network)
# make test — the whole test suite (needs PostgreSQL; integration tests need the Debian prometheus packages)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/onwatch demo

test: $(STAMP)
	$(BIN)/ruff check bot integrations tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check bot integrations tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/rca.py
	$(BIN)/onwatch bench ingest --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
