# Two commands: `make demo` runs the main job, `make test` runs ruff and passes the tests.
# Both create .venv at the repo root on first use (torch's CPU wheel first, then the
# project in editable mode) and do nothing more once it is up to date.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reflexdrive-installed
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reflexdrive demo --out runs/demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench_clock.py

clean:
	rm -rf $(VENV) runs .pytest_cache
