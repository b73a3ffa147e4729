# The project's commands. `make demo` and `make test` are the two that matter.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CSV    ?= data/TestSample.csv
CHART  ?=
PYTEST_ARGS ?=

.PHONY: help install system demo demo-full report bench test test-unit chaos up down env clean wheels container-base container-test constraints

help:
	@echo "make demo [CSV=path]   run the pipeline end to end on the local stack"
	@echo "make demo-full         the demo on a full-size (541,909-row) file shaped like the real one (~10 min)"
	@echo "make report [CHART=x.png] the sample through the pipeline, then the reporting views"
	@echo "make bench             throughput, CPU, memory and latency against the naive way (a few minutes)"
	@echo "make test              unit, integration and end-to-end tests"
	@echo "make test-unit         the fast tests only"
	@echo "make chaos             the fault-injection suite at full length, with its report"
	@echo "make up / make down    start / stop the local stack (make env prints its variables)"
	@echo "make container-test    build the images with podman, run docker-compose.yml, check it"

# The virtual environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# checkov pins boto3 and networkx below what the project uses: a venv of its own.
CHECKOV := $(VENV)/tools/checkov/bin/checkov
$(CHECKOV): | $(VENV)/.installed
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install --quiet 'checkov==3.3.30'

install: $(VENV)/.installed $(CHECKOV)

# Java, PostgreSQL's server and Prometheus: installed when missing (as root),
# else named with the command that installs them. CI runs the same script.
system:
	@scripts/ensure-system-packages.sh

demo: install system
	$(PY) -m local_stack.demo --csv $(CSV)

# The data set's full size, where the real file cannot be downloaded: a
# stand-in of 541,909 rows with its quirks (bench/full_dataset.py), then the demo.
FULL_CSV := .local/datasets/online-retail-full.csv
$(FULL_CSV): bench/full_dataset.py | $(VENV)/.installed
	$(PY) -m bench.full_dataset $@
demo-full: install system $(FULL_CSV)
	$(PY) -m local_stack.demo --csv $(FULL_CSV)

# The reporting views of a throwaway stack loaded with $(CSV); CHART=path.png
# also draws revenue by day.
report: install system
	$(PY) -m local_stack.report --csv $(CSV) $(if $(CHART),--chart $(CHART))

# The benchmarks, on a throwaway stack: a table on stderr, the figures as the
# last line of JSON on stdout. BENCH_ARGS="--rows 20000" for a quicker run.
BENCH_ARGS ?=
bench: install system
	$(PY) -m bench $(BENCH_ARGS)

# The container test has its own target: it needs podman (see container-test).
# Two pytest workers, a test file each at a time (a module's stack and KCL stay
# in one process): the e2e and chaos modules mostly wait on the KCL's leases
# and intervals, so two side by side take about half the time one by one.
# TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 2
test: install system
	$(PY) -m pytest -m "not container" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

chaos: install system
	$(PY) -m tests.chaos $(PYTEST_ARGS)

up: install system
	$(PY) -m local_stack up

down: install
	$(PY) -m local_stack down

env: install
	@$(PY) -m local_stack env

# --- containers --------------------------------------------------------------
# Where no registry is reachable (these machines): a Debian base bootstrapped
# here, the Python packages as wheels built on the host, podman for docker.
BASE_IMAGE_LOCAL ?= localhost/bookworm-slim:latest
CONTAINERS_CONF  ?= $(CURDIR)/tests/containers/containers.conf
export CONTAINERS_CONF

wheels: docker/wheels/.built
docker/wheels/.built: pyproject.toml docker/constraints.txt $(VENV)/.installed
	$(PY) -m pip wheel --quiet --wheel-dir docker/wheels -c docker/constraints.txt '.[emulator]' setuptools
	rm -f docker/wheels/retail_stream-*.whl  # the images build the project from its source
	touch $@

container-base:
	tests/containers/bootstrap-base.sh $(BASE_IMAGE_LOCAL)

container-test: wheels container-base
	BASE_IMAGE=$(BASE_IMAGE_LOCAL) PIP_OPTIONS=--no-index $(PY) -m pytest -m container tests/containers $(PYTEST_ARGS)

# The exact versions the images install, resolved afresh from pyproject.toml.
constraints:
	rm -rf build/lock && $(PYTHON) -m venv build/lock
	build/lock/bin/pip install --quiet '.[emulator]'
	{ echo "# Exact versions the images install (pip -c). Regenerate with: make constraints"; \
	  build/lock/bin/pip freeze --exclude retail-stream; \
	  build/lock/bin/pip download --quiet --no-deps --dest build/lock 'setuptools>=68' && \
	  ls build/lock/setuptools-*.whl | sed 's/.*setuptools-\([^-]*\)-.*/setuptools==\1/'; } > docker/constraints.txt

clean:
	-$(PY) -m local_stack down --purge
	rm -rf $(VENV) build *.egg-info rejects docker/wheels/*.whl docker/wheels/.built
