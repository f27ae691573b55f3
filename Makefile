VENV ?= .venv
PYTHON ?= python3
# Extra requirements for the install, e.g. EXTRA_PIP='Django>=6.1,<6.2' to test another Django;
# each is quoted for the shell, so version operators survive.
EXTRA_PIP ?=
PY = $(VENV)/bin/python

.PHONY: demo test lint bench host-check clean

# The stamp reinstalls only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]' $(foreach r,$(EXTRA_PIP),'$(r)')
	touch $@

# The Quick start's main job: 2,000 demo charts from birth data, natal aspects for all, top-10 matches for each.
demo: $(VENV)/.installed
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py compute_aspects --demo 2000 --mode natal --mode top-k -k 10

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# The built wheel in a fresh venv driving tests/host (e-mail user model, DEBUG off, gunicorn): ~15 s, no downloads.
host-check: $(VENV)/.installed
	VENV=$(VENV) bash tests/host/check.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) .venv312 build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis db.sqlite3
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
