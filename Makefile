# The two commands: `make run` and `make test`. Both install what is missing first (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup setup-test run test check native-test bench soak lint clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

setup-test:
	@VENV=$(VENV) ./scripts/setup.sh --test

run: setup
	$(VENV)/bin/cuecast serve $(ARGS)

test: setup-test native-test
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy
	$(PY) -m pytest --durations=15 $(ARGS)

# The fast tests (under a minute): lint, types, the import layers, the unit tests and the native kernels.
check: setup-test native-test
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy
	$(PY) -m pytest -q tests/unit $(ARGS)

# The pixel kernels against their reference: on this CPU, and cross-built for aarch64 under qemu-user.
native-test:
	meson test -C build/native --print-errorlogs -q
	meson test -C build/native-aarch64 --print-errorlogs -q

bench: setup-test
	$(PY) bench/run_all.py

soak: setup-test
	$(PY) -c "import sys; sys.path.insert(0, '.'); import runpy; runpy.run_module('bench.soak', run_name='__main__')"

lint: setup-test
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
