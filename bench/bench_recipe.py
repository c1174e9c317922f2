"""Benchmark: training speed and time to a test accuracy of a training recipe on a capture set.

Trains one run (``opticsfree.training.train``) with a checkpoint after every epoch, then scores
every checkpoint on the test split with ``opticsfree evaluate`` (the head's argmax for ``ce``,
the nearest class prototype otherwise). Reported:

* scenes/s: training rows per second over all epochs (validation excluded);
* the test accuracy after each epoch;
* time to ``--target`` test accuracy: wall time from the start of the run (loading, camera
  re-captures and initialisation included) to the end of the first epoch whose checkpoint
  reaches it (validation time included, evaluation of the test split not).

The test split is only *measured* here, never used to choose anything. Results go to stdout
as Markdown and to ``bench/results/recipe.md`` (``--name`` another file there).

Usage:
    .venv/bin/python bench/bench_recipe.py CAPTURES [--epochs 10] [--target 0.6] [--threads N]
        [--out DIR] [--set KEY=VALUE ...] [--name FILE.md] [--test TEST_CAPTURES]

``--test`` scores the test split of another capture set with the same classes (for a training
set made with ``simulate --split train``). The table's "elapsed s" column is the wall time from
the start of the run to the end of each epoch, so runs of different backbones can be compared
at equal time.

The default recipe is the full-strength one of docs/metric-learning.md (``ce`` with label
smoothing 0.2, ``wvgg`` width 16 with max pooling, the physics-informed front end, Nesterov SGD
at 0.1 with a cosine schedule, one mirrored copy of every training scene re-captured by the
camera); ``--set`` overrides any TrainConfig field.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from opticsfree.cli.common import parse_key_values
from opticsfree.training import train

RECIPE = {"loss": "ce", "backbone": "wvgg", "width": 16, "pool": "max", "front_end": True,
          "optimizer": "sgd", "lr": 0.1, "label_smoothing": 0.2, "scene_augment": "flip"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("captures")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="runs/bench-recipe")
    ap.add_argument("--set", dest="set_", action="append", default=[])
    ap.add_argument("--name", default="recipe.md", help="result file under bench/results")
    ap.add_argument("--test", default=None, help="capture set whose test split is scored (default: CAPTURES)")
    args = ap.parse_args()
    cfg = {**RECIPE, **parse_key_values(args.set_, "--set"), "captures": args.captures, "epochs": args.epochs,
           "checkpoints": list(range(1, args.epochs + 1))}
    if args.threads:
        cfg["threads"] = args.threads
    out = Path(args.out)
    t0 = time.perf_counter()
    train(cfg, out, resume=(out / "config.json").is_file())
    total = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    classifier = "head" if cfg["loss"] == "ce" else "prototype"
    res = subprocess.run([sys.executable, "-m", "opticsfree.cli.main", "evaluate", str(out), "--split", "test",
                          "--classifier", classifier, "--json", "--no-figures",
                          *(["--captures", args.test] if args.test else [])],
                         check=True, capture_output=True, text=True)
    acc = {int(r["epoch"]): float(r["accuracy"]) / 100.0 for r in json.loads(res.stdout)}  # evaluate prints %
    train_s = sum(r["seconds"] for r in rows)
    epoch_s = [r["seconds"] + r.get("val_seconds", 0.0) for r in rows]
    setup = max(0.0, total - sum(epoch_s))  # only meaningful for a run made in one go
    reached = next((e for e in sorted(acc) if acc[e] >= args.target), None)
    to_target = None if reached is None else setup + sum(epoch_s[:reached])
    scenes = sum(r["images_per_s"] * r["seconds"] for r in rows) / max(train_s, 1e-9)
    lines = [f"# Recipe benchmark ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads)", "",
             f"captures: `{args.captures}`" + (f", test split of `{args.test}`" if args.test else "")
             + f"; config: `{json.dumps({k: v for k, v in cfg.items() if k != 'checkpoints'})}`",
             "", "| epoch | train s | elapsed s | val acc | test acc |", "| --- | --- | --- | --- | --- |"]
    for i, r in enumerate(rows):
        lines.append(f"| {r['epoch']} | {r['seconds']:.1f} | {setup + sum(epoch_s[:i + 1]):.0f} | {r['val_accuracy']:.4f} "
                     f"| {acc.get(r['epoch'], float('nan')):.4f} |")
    lines += ["", f"- scenes/s (training, validation excluded): {scenes:.0f}",
              f"- set-up (loading, re-captures, initialisation): {setup:.0f} s",
              f"- time to {args.target:.0%} test accuracy: "
              + (f"{to_target:.0f} s (epoch {reached})" if to_target is not None else "not reached"),
              f"- whole run: {total:.0f} s"]
    publish(lines, args.name)


def publish(lines: list[str], name: str) -> None:
    """Print a Markdown result and write it to ``bench/results/<name>``."""
    text = "\n".join(lines) + "\n"
    print(text)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results", name).write_text(text)


if __name__ == "__main__":
    main()
