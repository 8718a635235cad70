# The two commands: `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# What is installed, per extra: the demo needs only `.[demo]` (Synapse and the mail sink);
# tests, type checks and benchmarks need the whole toolchain in `.[bench]`.
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
DEV_STAMP  := $(VENV)/.installed-bench-$(HASH)

.PHONY: demo test check lint typecheck imports unit bench browser postgresql wheel-check clean i18n

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

# PostgreSQL from Debian too: the storage tests run on both backends (tests/pgkit.py
# starts a throwaway cluster with initdb + pg_ctl on a free loopback port).
postgresql:
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  echo "installing Debian's postgresql for the storage tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	  || { echo "could not install postgresql: run 'apt-get install postgresql' as root"; exit 1; }; }

demo: $(DEMO_STAMP)
	$(BIN)/libhub demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# The import contract (pyproject.toml, [tool.importlinter]): layers point down, no cycles.
imports: $(DEV_STAMP)
	$(BIN)/lint-imports

check: lint typecheck imports

# The wheel, installed on its own outside the source tree, runs the commands a deployment
# runs (package data such as templates and migrations must ship inside it).
wheel-check: $(BIN)/python
	.ci/wheel-check $(BIN)/python

test: check browser postgresql wheel-check
	$(BIN)/pytest

bench: $(DEV_STAMP)
	$(BIN)/python bench/feeds_poll.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/digest.py
	$(BIN)/python bench/bot_latency.py
	$(BIN)/python bench/archive.py
	$(BIN)/python bench/parse.py

# Translations: extract every marked string into the template, merge it into each
# language's catalog (new strings arrive empty, changed ones fuzzy: translate them), and
# compile the catalogs the service loads. tests/test_i18n.py fails while any is missing.
LOCALES := network/locale
i18n: $(DEV_STAMP)
	$(BIN)/pybabel extract -F $(LOCALES)/babel.cfg -k N_ --add-comments=Translators: --no-location --sort-output \
	  --project libhub --copyright-holder "libhub contributors" -o $(LOCALES)/libhub.pot network bots
	$(BIN)/pybabel update -D libhub -i $(LOCALES)/libhub.pot -d $(LOCALES) --no-wrap \
	  --ignore-obsolete
	$(BIN)/pybabel compile -D libhub -d $(LOCALES) --statistics

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
