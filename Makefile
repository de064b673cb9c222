# Everything installs itself into .venv on first use; `make run` and `make test` need only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test test-fast lint bench bench-quick bench-three-epochs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# What `make run` needs (TensorFlow for the CPU, and the audit's cleanlab and scikit-learn) ...
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[cpu,audit]'
	touch $@

# ... and what the tests, the linter and the benchmarks need besides (the `test` extra holds both).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

## run: the whole exercise on the default data (set CATDOG_DATA, or pass ARGS="--data DIR")
run: $(VENV)/.installed-run
	$(BIN)/catdog run $(ARGS)

## test: the full test suite
test: $(VENV)/.installed-test
	scripts/ensure-chromium
	$(BIN)/python -m pytest $(ARGS)

## lint: ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade), configured in pyproject.toml
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks

## test-fast: the suite without tests marked slow
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

## bench: the full benchmark against the reference recipe (long: see benchmarks/README.md)
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench.py $(ARGS)

## bench-quick: a few minutes' check of the benchmark
bench-quick: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench.py --quick $(ARGS)

## bench-three-epochs: transfer against finetune at 3 epochs, over five seeds (about 13 minutes)
bench-three-epochs: $(VENV)/.installed-test
	$(BIN)/python benchmarks/three_epochs.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
