# The README's commands. `make run` sets everything up and serves; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi

# The browser tests serve htmx from a local copy of the npm package at the version the app pins,
# so that version has one source of truth: HTMX_URL in app/config.py.
HTMX_VERSION := $(shell sed -n 's|.*htmx\.org@\([0-9][0-9.]*\)/.*|\1|p' app/config.py | head -n 1)
HTMX_JS := tests/e2e/.cache/htmx.org-$(HTMX_VERSION).min.js
# The accessibility checker the browser tests inject into each page (its version: tests/e2e/conftest.py).
AXE_VERSION := $(shell sed -n 's|^AXE_VERSION = "\([0-9.]*\)".*|\1|p' tests/e2e/conftest.py)
AXE_JS := tests/e2e/.cache/axe-core-$(AXE_VERSION).min.js
CHROMIUM ?= /usr/bin/chromium
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest

.PHONY: run test test-sqlite test-e2e test-postgres setup dev-setup e2e-deps browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed
	$(BIN)/flask db upgrade
	$(BIN)/flask demo seed --if-empty
	$(BIN)/flask recs pipeline --if-unpublished

run: setup
	$(BIN)/flask run --host $(HOST) --port $(PORT)

dev-setup: $(VENV)/.installed-dev

# The whole suite on SQLite, the browser tests, then the suite again on a throwaway PostgreSQL;
# --keep-going runs all three even when one fails, and still exits non-zero.
test: dev-setup e2e-deps
	$(MAKE) --no-print-directory --keep-going test-sqlite test-e2e test-postgres

test-sqlite: dev-setup
	env -u TEST_DATABASE_URL $(PYTEST) -n $(TEST_WORKERS) -m "not e2e"

# One browser, one process: the tests drive pages one after another anyway.
test-e2e: dev-setup e2e-deps
	env -u TEST_DATABASE_URL $(PYTEST) -m e2e tests/e2e

test-postgres: dev-setup
	tests/with_postgres.sh $(PYTEST) -n $(TEST_WORKERS) -m "not e2e"

e2e-deps: $(HTMX_JS) $(AXE_JS) browser

$(AXE_JS):
	@test -n "$(AXE_VERSION)" || { echo "error: no AXE_VERSION in tests/e2e/conftest.py" >&2; exit 1; }
	mkdir -p $(@D)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  npm pack --silent --pack-destination "$$tmp" axe-core@$(AXE_VERSION) >/dev/null && \
	  tar -xzf "$$tmp/axe-core-$(AXE_VERSION).tgz" -C "$$tmp" package/axe.min.js && \
	  mv "$$tmp/package/axe.min.js" $@

$(HTMX_JS):
	@test -n "$(HTMX_VERSION)" || { echo "error: no htmx.org@VERSION in HTMX_URL (app/config.py)" >&2; exit 1; }
	mkdir -p $(@D)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  npm pack --silent --pack-destination "$$tmp" htmx.org@$(HTMX_VERSION) >/dev/null && \
	  tar -xzf "$$tmp/htmx.org-$(HTMX_VERSION).tgz" -C "$$tmp" package/dist/htmx.min.js && \
	  mv "$$tmp/package/dist/htmx.min.js" $@

# Playwright drives Debian's Chromium; its own browser download is not used.
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" -eq 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
	  echo "warning: $(CHROMIUM) is missing, so the browser tests will fail;" \
	    "install it with: sudo apt-get install -y chromium" >&2; \
	fi

# Regenerate docs/benchmarks.md: offline quality, the pipeline at 10k and 100k students (add 300k
# with BENCH_SIZES=10000,100000,300000: about fifteen minutes more), serving under wrk on loopback, and
# fold-in against precomputed rows and against a full retrain.
BENCH_SIZES ?= 10000,100000
bench: dev-setup
	@if command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" -eq 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; \
	else \
	  echo "error: wrk is missing; install it with: sudo apt-get install -y wrk" >&2; exit 1; \
	fi
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.pipeline_scale --sizes $(BENCH_SIZES)
	$(BIN)/python -m bench.serving
	$(BIN)/python -m bench.foldin
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache tests/e2e/.cache tests/e2e/artifacts
