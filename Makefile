# The project's commands. `make demo` and `make test` are the two that matter.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CSV    ?= data/TestSample.csv
PYTEST_ARGS ?=

.PHONY: help install demo test test-unit chaos up down env clean

help:
	@echo "make demo [CSV=path]   run the pipeline end to end on the local stack"
	@echo "make test              unit, integration and end-to-end tests"
	@echo "make test-unit         the fast tests only"
	@echo "make chaos             the fault-injection suite at full length, with its report"
	@echo "make up / make down    start / stop the local stack (make env prints its variables)"

# The virtual environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m local_stack.demo --csv $(CSV)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

chaos: install
	$(PY) -m tests.chaos $(PYTEST_ARGS)

up: install
	$(PY) -m local_stack up

down: install
	$(PY) -m local_stack down

env: install
	@$(PY) -m local_stack env

clean:
	-$(PY) -m local_stack down --purge
	rm -rf $(VENV) build *.egg-info rejects
