# The README's two commands: `make lab` (the main job on the embedded default stack) and
# `make test` (the whole suite). Both install what they need first (scripts/setup.sh).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
PYTEST_ARGS ?=

.PHONY: setup lab test lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

## lab: validate every stack, then plan the lab stack offline and write its artifacts
lab: $(STAMP)
	$(BIN)/llmcluster validate
	$(BIN)/llmcluster plan --stack lab --out $(OUT)/lab

## test: the whole suite (unit, program, policy, roles, verify tiers)
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check llmcluster tests bench scripts __main__.py

bench: $(STAMP)
	$(BIN)/python bench/plan_scaling.py

clean:
	rm -rf $(OUT) .pytest_cache .hypothesis
