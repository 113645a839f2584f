# The two commands a new user needs:  make run  and  make test.
# Both create the virtualenv and install what they need; nothing else is assumed but Python >= 3.11.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint check-migrations deploy-check ci clean-db help

help:
	@echo "make run    - set up, migrate, seed demo data and serve on http://$(HOST):$(PORT)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make lint   - ruff check"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[test]"
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_seed
	HOST=$(HOST) PORT=$(PORT) PY=$(PY) scripts/serve.sh

test: $(VENV)/.installed-test
	@scripts/ensure-chromium.sh || echo "warning: Chromium is not installed; the browser tests will fail and say so"
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

check-migrations: $(VENV)/.installed-run
	$(PY) manage.py makemigrations --check --dry-run

deploy-check: $(VENV)/.installed-run
	scripts/deploy-check.sh $(PY)

ci:
	.ci/run

clean-db:
	@echo "This deletes the embedded development database in var/pgdata."
	rm -rf var/pgdata
