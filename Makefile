# CarbonTrace: `make demo` runs the pipeline, `make test` runs every check. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
DEB_STAMP := .debs-checked
ARGS ?=

.PHONY: setup test lint demo firmware bench drill clean

setup: $(PY_STAMP) $(NODE_STAMP) $(DEB_STAMP)

$(DEB_STAMP): scripts/ensure-debs.sh
	bash scripts/ensure-debs.sh
	@touch $@

$(PY_STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# `npm install`, not `npm ci`: js-ipfs names an optional dependency by a git tarball that the npm registry
# cannot serve, and `npm ci` refuses such a lock file; install still follows package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest $(ARGS)

demo: setup
	$(PY) -m carbontrace.demo $(ARGS)

firmware: $(PY_STAMP)
	$(PY) scripts/build_firmware.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

bench: setup
	$(PY) -m carbontrace.bench $(ARGS)

drill: setup
	$(PY) -m carbontrace.drill $(ARGS)
