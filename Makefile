# The two commands: `make test` and `make demo`. Each creates .venv if missing and installs
# the package with its pinned dependencies (torch==2.13.0, CPU build) first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OPTICSFREE_DATA ?= $(HOME)/.cache/opticsfree
export OPTICSFREE_DATA

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing else can pull a different (CUDA) build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/opticsfree run configs/quick.toml --out runs/quick

bench: $(STAMP)
	$(PY) bench/bench_simulate.py

clean:
	rm -rf $(VENV) runs .pytest_cache
