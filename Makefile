# Two entry points on a fresh machine: `make demo` and `make test` (each creates .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ifdef MAPSCOPE_DATA
export MAPSCOPE_DATA := $(abspath $(MAPSCOPE_DATA))
endif
DEMO_OUT ?= runs/demo

.PHONY: setup kernels browser demo test wheel-check docs notebooks lint bench clean

setup: $(VENV)/.installed $(VENV)/.kernels

# torch is pinned to 2.13.0 in pyproject.toml; on machines whose pip sees the CPU wheel
# (2.13.0+cpu sorts above 2.13.0) that build is taken and no CUDA packages are pulled.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# numba's machine code for the CPU training kernels, compiled once here rather than in the first
# training (18 s in two processes on 2 cores, 30-40 s on one); compiled again when the kernels'
# source changes
KERNEL_SOURCES := $(addprefix src/mapscope/cnn/,conv_pool.py conv_pool_kernels.py winograd.py winograd_kernels.py kernel_jobs.py kernel_cache.py precompile.py)
$(VENV)/.kernels: $(VENV)/.installed $(KERNEL_SOURCES)
	$(BIN)/python -m mapscope.cnn.precompile
	touch $@

# after editing a kernel: the package's shipped kernel cache, then the test suite's own (tests
# fail until both are of the kernels' current sources)
kernels: setup
	$(BIN)/python -m mapscope.cnn.kernel_cache
	$(BIN)/python tests/kernels_of_tests.py

demo: setup
	$(BIN)/python scripts/demo.py $(DEMO_OUT)

# The atlas browser test drives Debian's chromium; installed here when missing (needs root or sudo).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing Debian's chromium for the atlas browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# one worker per core (at most 4; pytest-xdist); tests of one atlas share a worker (loadgroup)
test: setup browser
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadgroup

# the wheel and sdist built, the wheel installed into a fresh venv and run from outside the checkout
wheel-check: setup
	$(BIN)/python scripts/check_wheel.py

# the documentation site, offline and strict (a broken link or reference fails), into site/
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "wrote site/index.html"

# the notebooks of examples/, run top to bottom at their quick settings (nbmake)
notebooks: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --override-ini addopts= --nbmake examples

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/cnn_train.py
	$(BIN)/python benchmarks/mlp_train.py
	$(BIN)/python benchmarks/under_load.py

clean:
	rm -rf $(VENV) runs .pytest_cache
