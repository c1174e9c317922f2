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

# The main job (for now): simulate CIFAR-10's test split with the `seed` camera, validate the
# set, draw its figure and measure its quality. Resumable: rerun to complete an interrupted run.
DEMO := runs/demo
demo: $(STAMP)
	$(VENV)/bin/opticsfree simulate --dataset cifar10 --camera seed --split test --out $(DEMO)/seed-test
	$(VENV)/bin/opticsfree check $(DEMO)/seed-test
	$(VENV)/bin/opticsfree show $(DEMO)/seed-test --out $(DEMO)/seed-test.png
	$(VENV)/bin/opticsfree quality $(DEMO)/seed-test --json > $(DEMO)/quality.json.tmp && mv $(DEMO)/quality.json.tmp $(DEMO)/quality.json
	$(VENV)/bin/opticsfree quality $(DEMO)/seed-test
	@echo "figure: $(DEMO)/seed-test.png  quality: $(DEMO)/quality.json"

bench: $(STAMP)
	$(PY) bench/bench_simulate.py

clean:
	rm -rf $(VENV) runs .pytest_cache
