# make demo — see onwatch investigate a simulated incident (SQLite, terminal rendering, no network)
# make test — the whole test suite (needs PostgreSQL; integration tests need the Debian prometheus packages)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo demo-drift test lint bench clean screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

# The test install adds the dev tools and the bench extra (BARO, the baseline the RCA benchmark test runs).
$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(TEST_STAMP) $(RUN_STAMP)

demo: $(RUN_STAMP)
	$(BIN)/onwatch demo

demo-drift: $(RUN_STAMP)
	$(BIN)/onwatch demo --scenario drift

test: $(TEST_STAMP)
	$(BIN)/ruff check bot integrations tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(TEST_STAMP)
	$(BIN)/ruff check bot integrations tests bench
	$(BIN)/mypy

# The README's screenshots of the web view (docs/img/web-*.png), taken by headless Chromium (Debian's chromium).
screenshots: $(TEST_STAMP)
	ONWATCH_SCREENSHOTS=1 $(BIN)/pytest -q -p no:cacheprovider tests/test_web_ui_browser.py

bench: $(TEST_STAMP)
	$(BIN)/python bench/rca.py
	$(BIN)/onwatch bench ingest --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
