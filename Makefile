# The two commands: `make test` and `make demo`. Each creates .venv if missing and installs
# the package first: torch pinned to 2.13.0 (CPU build; constraints.txt), then the package,
# whose pyproject.toml states version ranges, under the same constraint.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OPTICSFREE_DATA ?= $(HOME)/.cache/opticsfree
export OPTICSFREE_DATA

# make bench: simulation speed, `camera info --limit 5000` time, inference speed (PyTorch,
# ONNX Runtime fp32/int8, `predict` end to end), then online-mining vs fixed-tuple training speed
# on a 5,000-image `seed` capture set (simulated into BENCH_CAPTURES, resumable)
BENCH_CAPTURES ?= runs/bench-seed
# ... then backbone step speed, and the full-strength recipe's scenes/s and time to 60% test
# accuracy on all of CIFAR-10 through the `seed` camera (simulated into BENCH_FULL, resumable)
BENCH_FULL ?= runs/seed-all

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing else can pull a different (CUDA) build; the constraint
	# keeps it pinned while the package and its dependencies are installed
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,export]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The main job: the whole seed study in miniature (configs/quick.toml: a class-stratified
# CIFAR-10 subset, simulate -> tuples -> reconstruct -> train -> evaluate -> bayes -> report).
# Resumable: rerun to complete an interrupted run; finished stages are skipped.
DEMO := runs/demo
demo: $(STAMP)
	$(VENV)/bin/opticsfree run configs/quick.toml --out $(DEMO)
	@echo "report: $(DEMO)/report.html  ($(DEMO)/report.md, $(DEMO)/results.json)"

bench: $(STAMP)
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_camera_info.py
	$(PY) bench/bench_inference.py
	$(VENV)/bin/opticsfree simulate --dataset cifar10 --camera seed --split train --limit 5000 --out $(BENCH_CAPTURES)
	$(PY) bench/bench_train.py $(BENCH_CAPTURES)
	$(PY) bench/bench_backbones.py
	$(VENV)/bin/opticsfree simulate --dataset cifar10 --camera seed --out $(BENCH_FULL)
	$(PY) bench/bench_recipe.py $(BENCH_FULL) --out runs/bench-recipe

clean:
	rm -rf $(VENV) runs .pytest_cache
