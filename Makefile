# One set of entry points for people, the README and CI.
#   make run     set up .venv and start the server (QULAB_* variables honoured)
#   make test    set up .venv and run every check and test
#   make check   lint, type-check, contract lint, generated-code drift
#   make proto   regenerate the Python, Go and TypeScript code from protos/
#   make bench   run the benchmarks (prints a table, writes bench/results/*.json)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(abspath $(PY))

.PHONY: setup run test check proto bench

$(VENV)/.synced: pyproject.toml clients/python/pyproject.toml uv.lock
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION); }
	$(UV) sync --locked --quiet
	@touch $@

setup: $(VENV)/.synced

run: setup
	$(VENV)/bin/qulab-server

check: setup
	$(PY) -m ruff check server clients/python tests bench scripts
	$(PY) -m ruff format --check server clients/python tests bench scripts
	$(PY) -m mypy server/qulab clients/python/qulab
	$(PY) -m scripts.proto --lint
	$(PY) -m scripts.proto --check

test: check
	$(PY) -m pytest

proto: setup
	$(PY) -m scripts.proto --lint
	$(PY) -m scripts.proto

bench: setup
	$(PY) -m bench
