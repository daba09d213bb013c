# Two commands on a fresh machine: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-reliability lint bench clean services-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/scheduler run

test: install
	$(BIN)/pytest

test-reliability: install
	RELIABILITY_LONG=1 $(BIN)/pytest tests/reliability -v -s -o timeout=900

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks $(if $(FULL),--full,)

services-down: install
	$(BIN)/scheduler services down

clean:
	rm -rf $(VENV) .scheduler .mypy_cache .ruff_cache build *.egg-info
