# Two commands for a new user: `make demo` and `make test`. Each installs into a local virtual environment.
# Every pip call passes constraints.txt, which pins torch to the CPU build (no CUDA downloads).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# -qq: pip's errors still show; the warnings this machine's pip configuration prints about absent local indexes do not.
PIP := $(BIN)/python -m pip install -qq --constraint constraints.txt $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: install install-dev demo test lint clean bench-env

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "installing seqvision and its dependencies into $(VENV) (about a minute the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

demo: install
	$(BIN)/seqvision train --model lstm --dataset digits --lr 0.01 --epochs 20

test: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# The Keras environment of benchmarks/side_by_side.py: the seed programs run there, beside seqvision.
# TensorFlow is never a dependency of seqvision; this venv is separate and only the benchmark uses it.
KERAS_VENV ?= .venv-keras
bench-env: $(KERAS_VENV)/.installed

$(KERAS_VENV)/.installed:
	@echo "installing TensorFlow's CPU build and Keras into $(KERAS_VENV) (about 1 GB, a few minutes)"
	test -x $(KERAS_VENV)/bin/python || $(PYTHON) -m venv $(KERAS_VENV)
	$(KERAS_VENV)/bin/python -m pip install -qq "tensorflow-cpu==2.21.*" "keras==3.15.*"
	touch $@

clean:
	rm -rf $(VENV) $(KERAS_VENV) .pytest_cache .ruff_cache
