# Everyday commands. Each is a plain one-liner you can also type yourself.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: sync run lint format typecheck type-check test test-local check-sql bench bench-stories soak all clean

sync:            ## create the virtualenv and install the service with test and dev tools
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[dev]'

run:             ## serve on 127.0.0.1:8000 (embedded PostgreSQL and Redis unless the URLs are set)
	$(PY) run.py

lint:            ## ruff lint and format check
	$(VENV)/bin/ruff check server tests bench run.py && $(VENV)/bin/ruff format --check server tests bench run.py

format:          ## rewrite files in ruff's format and apply safe fixes
	$(VENV)/bin/ruff format server tests bench run.py && $(VENV)/bin/ruff check --fix server tests bench run.py

typecheck:       ## mypy over server/
	$(VENV)/bin/mypy

type-check: typecheck

test:            ## the test suite (embedded servers unless TEST_DATABASE_URL / TEST_REDIS_URL are set)
	$(PY) -m pytest

test-local:      ## the test suite against this machine's PostgreSQL and Redis
	TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres TEST_REDIS_URL=redis://127.0.0.1:6379/0 $(PY) -m pytest

check-sql:       ## prepare every statement in queries/ against the migrated database
	$(PY) run.py check-sql

bench:           ## every benchmark (see bench/README.md), side by side with the baseline
	$(PY) -m bench.feed && $(PY) -m bench.api && $(PY) -m bench.notifications && $(PY) -m bench.degraded && $(PY) -m bench.stories && $(PY) -m bench.comments && $(PY) -m bench.tasks && $(PY) -m bench.scale

bench-stories:   ## issue 11's whole benchmark: edits, merges, rebuilt revisions, storage, comment pages (BENCH_DATABASE_URL for storage and rebuild)
	$(PY) -m bench.stories --rounds 3 --comments

soak:            ## the 10-minute soak (not in bench: long): RSS and fds under a mixed load, docs/soak.png
	$(VENV)/bin/pip install -q -e '.[bench]' && $(PY) -m bench.soak

all: lint typecheck test

clean:           ## remove caches and the virtualenv (keeps var/, the embedded data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
