# The two commands: `make run` and `make test`. Both install what is missing first (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup run test bench soak lint clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

run: setup
	$(VENV)/bin/cuecast serve $(ARGS)

test: setup
	$(PY) -m ruff check src tests bench examples
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) bench/run_all.py

soak: setup
	$(PY) -c "import sys; sys.path.insert(0, '.'); import runpy; runpy.run_module('bench.soak', run_name='__main__')"

lint: setup
	$(PY) -m ruff check src tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
