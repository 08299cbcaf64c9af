# Two commands do all the set-up on a fresh machine:
#   make run    run the main job end to end on the embedded default data (digits)
#   make test   run the test suite
# Both create the virtual environment (.venv) first when it is missing or out of date.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EPISODES ?= 8
WORKERS  ?= 2
SPEC     ?= nightly
PAIRS    ?= 10

.PHONY: run test venv ui bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins every transitive package of the tested set.
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test,ray,bench]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m pipelines.run_all --spec $(SPEC) --episodes $(EPISODES) --workers $(WORKERS) --pairs $(PAIRS)

test: $(STAMP)
	$(PY) -m pytest -q

# The Dagster UI (127.0.0.1:3000, this project's instance) and the MLflow UI (127.0.0.1:5000); Ctrl-C stops both.
ui: $(STAMP)
	$(PY) -m pipelines.ui

bench: $(STAMP)
	$(PY) benchmarks/bench_generation.py
	$(PY) benchmarks/bench_branching.py
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_snapshot_readers.py

clean:
	rm -rf var .pytest_cache
