# The two commands of the README's quick start: `make run` and `make test`. Both are idempotent.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint

setup:
	@scripts/setup.sh

run: setup
	@scripts/run.sh

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
