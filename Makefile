# Two entry points on a fresh machine: `make demo` and `make test` (each creates .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ifdef MAPSCOPE_DATA
export MAPSCOPE_DATA := $(abspath $(MAPSCOPE_DATA))
endif
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# torch is pinned to 2.13.0 in pyproject.toml; on machines whose pip sees the CPU wheel
# (2.13.0+cpu sorts above 2.13.0) that build is taken and no CUDA packages are pulled.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	bash scripts/demo.sh $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/cnn_train.py
	$(BIN)/python benchmarks/mlp_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache
