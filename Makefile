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
# ONNX Runtime fp32/int8, `predict` end to end), `live` frames/s and `rig calibrate` against the
# true transfer matrix on the virtual rig, then online-mining vs fixed-tuple training speed
# on a 5,000-image `seed` capture set (simulated into BENCH_CAPTURES, resumable)
BENCH_CAPTURES ?= runs/bench-seed
# ... then backbone step speed, and the full-strength recipe's scenes/s and time to 60% test
# accuracy on all of CIFAR-10 through the `seed` camera (simulated into BENCH_FULL, resumable)
BENCH_FULL ?= runs/seed-all

.PHONY: install test demo rig-demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing else can pull a different (CUDA) build; the constraint
	# keeps it pinned while the package and its dependencies are installed
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,export,scale]"
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

# The rig without hardware (docs/rig.md, "A worked example"): the virtual rig of
# configs/rigs/virtual-seed.toml aligned, calibrated with patterns (held rigid: without the camera
# file's per-capture display jitter, docs/rig.md "Calibrating"), then 5,000 + 1,000 CIFAR-10
# scenes captured, a model trained on them, evaluated, and run live on the rig's camera.
# Resumable (capture and train continue where they stopped).
RIG := configs/rigs/virtual-seed.toml
RIG_DEMO := runs/rig-demo
rig-demo: $(STAMP)
	$(VENV)/bin/opticsfree rig preview --rig $(RIG) --frames 5 --json > /dev/null
	test -f $(RIG_DEMO)/camera.npz || $(VENV)/bin/opticsfree rig calibrate --rig $(RIG) --set camera.nuisances=false --repeats 8 --out $(RIG_DEMO)/camera.npz
	$(VENV)/bin/opticsfree rig capture --rig $(RIG) --dataset cifar10 --split train --limit 5000 --out $(RIG_DEMO)/train-set $(if $(wildcard $(RIG_DEMO)/train-set/rig.json),--resume)
	$(VENV)/bin/opticsfree rig capture --rig $(RIG) --dataset cifar10 --split test --limit 1000 --out $(RIG_DEMO)/test-set $(if $(wildcard $(RIG_DEMO)/test-set/rig.json),--resume)
	$(VENV)/bin/opticsfree rig report $(RIG_DEMO)/train-set
	$(VENV)/bin/opticsfree train $(RIG_DEMO)/train-set --recipe fast \
		--out $(RIG_DEMO)/run $(if $(wildcard $(RIG_DEMO)/run/config.json),--resume) > /dev/null
	$(VENV)/bin/opticsfree evaluate $(RIG_DEMO)/run --captures $(RIG_DEMO)/test-set --split test
	$(VENV)/bin/opticsfree live $(RIG_DEMO)/run --rig $(RIG) --dataset cifar10 --split test --limit 100 --frames 100 --json > $(RIG_DEMO)/live.jsonl
	@echo "rig demo: $(RIG_DEMO) (camera.npz, train-set, test-set, run, live.jsonl)"

bench: $(STAMP)
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_camera_info.py
	$(PY) bench/bench_inference.py
	$(PY) bench/bench_live.py
	$(PY) bench/bench_rig.py
	$(VENV)/bin/opticsfree simulate --dataset cifar10 --camera seed --split train --limit 5000 --out $(BENCH_CAPTURES)
	$(PY) bench/bench_train.py $(BENCH_CAPTURES)
	$(PY) bench/bench_backbones.py
	$(VENV)/bin/opticsfree simulate --dataset cifar10 --camera seed --out $(BENCH_FULL)
	$(PY) bench/bench_recipe.py $(BENCH_FULL) --out runs/bench-recipe

clean:
	rm -rf $(VENV) runs .pytest_cache
