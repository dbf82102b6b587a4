# Two entry points for a fresh machine: `make demo` (install + the full pipeline on
# the built-in demo catalogue) and `make test` (install + the test suite).
# torch==2.13.0 is installed first, on its own: a bare `torch` requirement would
# pull a multi-GB CUDA build; pyproject.toml only asks for a range 2.13.0 satisfies.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/sidrec demo

test: install
	$(BIN)/python -m pytest
