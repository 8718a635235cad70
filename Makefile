# The two commands: `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# What is installed, per extra: the demo needs only `.[demo]` (Synapse and the mail sink);
# tests, type checks and benchmarks need the whole toolchain in `.[bench]`.
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
DEV_STAMP  := $(VENV)/.installed-bench-$(HASH)

.PHONY: demo test check lint typecheck unit bench browser wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[demo]'
	rm -f $(VENV)/.installed-demo-*
	touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	rm -f $(VENV)/.installed-bench-*
	touch $@

# Chromium comes from Debian (a browser download does not work here); Playwright drives it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "could not install chromium: run 'apt-get install chromium' as root"; exit 1; }; }

demo: $(DEMO_STAMP)
	$(BIN)/libhub demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

check: lint typecheck

# The wheel, installed on its own outside the source tree, runs the commands a deployment
# runs (package data such as templates and migrations must ship inside it).
wheel-check: $(BIN)/python
	.ci/wheel-check $(BIN)/python

test: check browser wheel-check
	$(BIN)/pytest

bench: $(DEV_STAMP)
	$(BIN)/python bench/feeds_poll.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/digest.py
	$(BIN)/python bench/bot_latency.py
	$(BIN)/python bench/parse.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
