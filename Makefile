# The README's two commands: `make lab` (the main job on the embedded default stack) and
# `make test` (the whole suite). Both install what they need first (scripts/setup.sh).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
PYTEST_ARGS ?=

.PHONY: setup test-tools lab lab-engine test test-vm lint bench bench-converge clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

## test-tools: what only the tests use (system test tools, checkov's venv); make test and make test-vm
## run it, make lab does not (it installs only what the lab runs). Quick when all is there.
test-tools: $(STAMP)
	@bash scripts/setup.sh --test-tools

## lab: the main job on the embedded default stack (needs root): validate every stack, write the
## lab plan's artifacts, bring the lab up, converge it, verify it, then the summary: what was built,
## the verification, the phase table, where the files are, how to call the model. `llmcluster lab down`
## removes it. The summary is printed whether verify passed or not (verify's exit status is make's).
## The phase table (docs/lab.md "First run: phases"): every step's wall time goes to $(PHASES), started
## afresh by each make lab (scripts/phases.sh); setup's steps and `lab up`'s split (base image, host
## start) are parts of their phase; `lab converge` keeps its time per role in the lab state dir.
PHASES := $(OUT)/lab-phases.tsv
TIMED := bash scripts/phases.sh run
lab: export LLMCLUSTER_PHASES := $(PHASES)
lab: export LLMCLUSTER_LAB_IMAGE_BESIDE := 1
lab:
	@bash scripts/phases.sh start
	@$(MAKE) --no-print-directory -s setup
	$(TIMED) validate $(BIN)/llmcluster validate
	$(TIMED) plan $(BIN)/llmcluster plan --stack lab --out $(OUT)/lab
	$(TIMED) "lab up" $(BIN)/llmcluster lab up
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TIMED) converge $(BIN)/llmcluster lab converge
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TIMED) verify $(BIN)/llmcluster lab verify > $(OUT)/lab-verify.txt; rc=$$?; \
	  $(BIN)/llmcluster lab summary --artifacts $(OUT)/lab; \
	  echo "verification report (every failure in full): $(OUT)/lab-verify.txt"; exit $$rc

## lab-engine: the lab's opt-in real-model stand-in (docs/lab.md "A real model in the lab"): builds
## llama-cpp-python[server] once into the lab cache (minutes, niced) with SmolLM2-135M's GGUF. A lab run
## serves it with LLMCLUSTER_LAB_MODEL=smollm2 (make lab builds it then if it is missing).
lab-engine: $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} $(BIN)/python -m llmcluster.lab.llama_engine

## test: the whole suite (unit, program, policy, roles, verify tiers): the lab's tests and the rest
## as two pytest processes at once (scripts/test.sh says why not xdist)
test: $(STAMP) test-tools
	PATH="$(CURDIR)/$(BIN):$$PATH" OUT="$(OUT)" bash scripts/test.sh $(PYTEST_ARGS)

## test-vm: the VM tier (qemu guests under TCG: md RAID, device-mapper, 802.1Q, vlan_filtering;
## docs/lab.md "VM hosts"): slower, so a separate target; CI runs it after `make test`.
test-vm: $(STAMP) test-tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -p no:xdist --lab-vms tests/lab/test_vm.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check llmcluster tests bench scripts ansible __main__.py

bench: $(STAMP)
	$(BIN)/python bench/plan_scaling.py

## bench-converge: converge / re-converge wall time for 2, 4, 8, 16 lab hosts and forks/pipelining (root)
bench-converge: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/converge_scaling.py

clean:
	rm -rf $(OUT) .pytest_cache .hypothesis
