# nlbkit: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
REF    := .venv-ref
BIN    := $(VENV)/bin
NLBKIT := $(BIN)/nlbkit
DATA   ?= data
DEMO_DATASET ?= mc_maze_small
DEMO_TRAIN_ARGS ?=

.PHONY: help venv refenv test test-fast demo lint clean leaderboard leaderboard-val bench-train

help:
	@echo "make demo              generate a dataset in the NLB layout and run the whole path on it"
	@echo "make test              set up both environments and run the test suite"
	@echo "make test-fast         .venv only: the tests marked neither slow nor parity"
	@echo "make lint              ruff"
	@echo "make bench-train       seconds per training epoch, float32 loop against the fast path (docs/benchmarks.md)"
	@echo "make leaderboard       fetch, prepare, train (test phase), submit and validate: 7 datasets x 5/20 ms"
	@echo "make leaderboard-val   the same in the val phase, ending with the local scores table"
	@echo "                       (DATASETS=\"mc_maze_small ...\" BINS=\"5\" narrow it; SYNTH=1 uses generated data)"

# The CPU build of torch goes in first, so the package's torch range is already met.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# nlb_tools only installs with --no-deps, and only runs under pandas 2.2 / numpy 2.2.
$(REF)/.installed: tests/reference/requirements.txt
	$(PYTHON) -m venv $(REF)
	$(REF)/bin/pip install -q --upgrade pip
	$(REF)/bin/pip install -q -r tests/reference/requirements.txt
	$(REF)/bin/pip install -q --no-deps nlb_tools==0.0.4
	touch $@

venv: $(VENV)/.installed
refenv: $(REF)/.installed

test: venv refenv
	NLBKIT_REF_PYTHON=$(CURDIR)/$(REF)/bin/python $(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not parity"

# The whole path on generated data: synth, prepare, train (val phase, smoothing baseline beside),
# submit, validate and the scores table.
demo: venv
	$(MAKE) --no-print-directory leaderboard-val SYNTH=1 DATASETS="$(DEMO_DATASET)" BINS=5 \
	  TRAIN_ARGS="$(DEMO_TRAIN_ARGS)"

include leaderboard.mk

# Generated full-size mc_maze and mc_maze_small (BENCH_DATA), then eager against fast, side by side.
BENCH_DATA ?= data-bench
bench-train: venv
	@for d in mc_maze mc_maze_small; do \
	  [ -f $(BENCH_DATA)/$$d/tensors_20ms.h5 ] || { $(NLBKIT) synth $$d --scale full --data-dir $(BENCH_DATA) && \
	    $(NLBKIT) prepare $$d --data-dir $(BENCH_DATA) --bin-ms 5 --bin-ms 20; } || exit 1; done
	$(BIN)/python benchmarks/epoch_time.py $(BENCH_ARGS) \
	  $(BENCH_DATA)/mc_maze/tensors_20ms.h5 mc_maze 20 $(BENCH_DATA)/mc_maze/tensors_5ms.h5 mc_maze 5 \
	  $(BENCH_DATA)/mc_maze_small/tensors_20ms.h5 mc_maze_small 20 \
	  $(BENCH_DATA)/mc_maze_small/tensors_5ms.h5 mc_maze_small 5

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(REF) .pytest_cache
