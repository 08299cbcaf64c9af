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

.PHONY: run test venv ui bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins every transitive package of the tested set.
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tamiyo generate --spec nightly --episodes $(EPISODES) --workers $(WORKERS) --out var/raw

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_generation.py

clean:
	rm -rf var .pytest_cache
