# nlbkit: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
REF    := .venv-ref
BIN    := $(VENV)/bin
NLBKIT := $(BIN)/nlbkit
DATA   ?= data
DEMO_DATASET ?= mc_maze_small

.PHONY: help venv refenv test test-fast demo lint clean

help:
	@echo "make demo    generate a dataset in the NLB layout and run the whole path on it"
	@echo "make test    set up both environments and run the test suite"
	@echo "make lint    ruff"

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

demo: venv
	$(NLBKIT) synth $(DEMO_DATASET) --data-dir $(DATA) --scale small
	$(NLBKIT) prepare $(DEMO_DATASET) --data-dir $(DATA) --bin-ms 5

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(REF) .pytest_cache
