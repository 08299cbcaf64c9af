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
PRESET   ?= mini
NIGHT    ?=
# Test files spread over this many processes (pytest-xdist; each file stays in one, its fixtures shared).
TEST_WORKERS ?= 2

.PHONY: run full-refresh test venv ui bench clean datasets
FASHION_MNIST := /usr/share/datasets/fashion-mnist

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins every transitive package of the tested set.
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test,ray,bench]'
	@touch $(STAMP)

# The arena's regimes train on Fashion-MNIST (Debian's dataset-fashion-mnist). Found, or installed where this
# user may (root with apt-get); otherwise the arena regimes are skipped with a message and digits runs alone.
datasets:
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] || [ -n "$$TAMIYO_DATA_ROOT" ]; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist; the arena regimes will be skipped"; \
	else \
		echo "Fashion-MNIST: not found. Install Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist)" \
		     "or put the four idx files in a folder named by TAMIYO_DATA_ROOT; until then the arena regimes are skipped."; \
	fi

# One night of the improvement loop (the `nightly` job): a mini-night by default; PRESET=arena-v2 (2 hours on 2 cores),
# arena-v2-large or arena for a real one,
# NIGHT=YYYY-MM-DD for another night (a rerun of a night resumes it).
run: $(STAMP) datasets
	$(PY) -m pipelines.run_all --preset $(PRESET) --workers $(WORKERS) $(if $(NIGHT),--night $(NIGHT))

# Every Phase 1-3 asset, the reports and a curriculum round on a fresh batch (the former nightly job), on demand.
full-refresh: $(STAMP) datasets
	$(PY) -m pipelines.run_all --job full_refresh --spec $(SPEC) --episodes $(EPISODES) --workers $(WORKERS) --pairs $(PAIRS)

# The fuzz suite runs in a process of its own after the rest: Hypothesis also draws constants from the project
# modules loaded in the process, so only there are its cases the same on every run and machine, those of
# `pytest tests/test_warehouse_fuzz.py`, which reproduces any failure CI shows (docs/warehouse.md).
FUZZ_TESTS := tests/test_warehouse_fuzz.py
SUITE_CMD  = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --ignore=$(FUZZ_TESTS)
FUZZ_CMD   = $(PY) -m pytest -q $(FUZZ_TESTS)

test: $(STAMP)
	@echo "$(SUITE_CMD)"; $(SUITE_CMD); rest=$$?; \
	echo "$(FUZZ_CMD)"; $(FUZZ_CMD); fuzz=$$?; \
	echo "make test: the suite exited $$rest, the fuzz suite $$fuzz"; \
	exit $$(( rest != 0 ? rest : fuzz ))

# The Dagster UI (127.0.0.1:3000, this project's instance) and the MLflow UI (127.0.0.1:5000); Ctrl-C stops both.
ui: $(STAMP)
	$(PY) -m pipelines.ui

bench: $(STAMP)
	$(PY) benchmarks/bench_test_split.py
	$(PY) benchmarks/bench_env.py
	$(PY) benchmarks/bench_offline_rl.py
	$(PY) benchmarks/bench_generation.py
	$(PY) benchmarks/bench_branching.py
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_snapshot_readers.py
	$(PY) benchmarks/bench_devices.py

clean:
	rm -rf var .pytest_cache
