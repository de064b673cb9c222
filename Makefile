# Everything installs itself into .venv on first use; `make run` and `make test` need only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test test-fast lint bench bench-quick bench-three-epochs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

## run: the whole exercise on the default data (set CATDOG_DATA, or pass ARGS="--data DIR")
run: $(VENV)/.installed
	$(BIN)/catdog run $(ARGS)

## test: the full test suite
test: $(VENV)/.installed
	scripts/ensure-chromium
	$(BIN)/python -m pytest $(ARGS)

## lint: ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade), configured in pyproject.toml
lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

## test-fast: the suite without tests marked slow
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

## bench: the full benchmark against the reference recipe (long: see benchmarks/README.md)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py $(ARGS)

## bench-quick: a few minutes' check of the benchmark
bench-quick: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py --quick $(ARGS)

## bench-three-epochs: transfer against finetune at 3 epochs, over five seeds (about 13 minutes)
bench-three-epochs: $(VENV)/.installed
	$(BIN)/python benchmarks/three_epochs.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
