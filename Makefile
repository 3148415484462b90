# Energybox: `make run` starts the platform on a fresh machine, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install migrate static vendor clean messages app app-test

# Front-end libraries come from the npm registry (package.json, pinned by package-lock.json) and are
# copied into static/vendor/; nothing is loaded from a CDN.
NPM_STAMP := node_modules/.installed
VENDOR    := static/vendor/uplot/uPlot.iife.min.js static/vendor/uplot/uPlot.min.css

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js (with npm) to build the portal's front end"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NPM_STAMP)

static/vendor/uplot/%: $(NPM_STAMP)
	@mkdir -p $(dir $@)
	cp node_modules/uplot/dist/$* $@

vendor: $(VENDOR)

# The consumer app (app/, TypeScript + Preact + uPlot), built by Vite into consumer/static/app/, which
# Django serves at /app/. Its unit tests run with Vitest.
APP_BUILT   := consumer/static/app/index.html
APP_SOURCES := $(shell find app -type f 2>/dev/null)

$(APP_BUILT): $(NPM_STAMP) $(APP_SOURCES)
	node_modules/.bin/tsc -p app
	node_modules/.bin/vite build --config app/vite.config.mts --logLevel warn

app: $(APP_BUILT)

app-test: $(NPM_STAMP)
	node_modules/.bin/vitest run --config app/vite.config.mts

migrate: install
	$(PY) manage.py migrate --noinput

static: install vendor app
	$(PY) manage.py collectstatic --noinput --verbosity 0

# The message catalogs (German) are compiled by Babel, so no GNU gettext is needed.
messages: install
	$(PY) manage.py compilecatalogs

run: migrate static messages
	$(PY) manage.py runplatform

test: install vendor app app-test messages
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# The benchmarks measure the real services (each uses its own database); these defaults match the
# machine's local PostgreSQL, Redis and RabbitMQ and yield to values already in the environment.
bench: export BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/energybox_bench
bench: export CELERY_BROKER_URL ?= amqp://guest:guest@127.0.0.1:5672//
bench: export REDIS_URL ?= redis://127.0.0.1:6379/0
bench: install vendor app
	@set -e; for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) node_modules static/vendor consumer/static/app staticfiles data .pytest_cache .mypy_cache .ruff_cache
