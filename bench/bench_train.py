"""Benchmark: training speed of online mining against the seed's fixed-tuple loop.

Both arms train the same backbone with the same loss for one epoch on the same class-stratified
subset of a capture set's train split, on this machine, one after the other:

* ``online``: class-balanced in-memory batches (uint8 tensors decoded once), one forward pass
  per image, in-batch mining (``opticsfree train --sampling online``, the default);
* ``tuples``: the seed's loop: the rows of ``tuples_train.csv``, every image of every row
  decoded from its file each time the row is used, one forward pass per column
  (``opticsfree train --sampling tuples``).

The unit is *training rows per second* (one row = one lensless anchor with its references), so
both arms do the same amount of learning per unit. Wall time includes everything an epoch does
except validation (which is identical). Results go to stdout as Markdown and to
``bench/results/train.md``.

Usage:
    .venv/bin/python bench/bench_train.py CAPTURES [--loss triplet] [--backbone cnn4]
        [--limit N] [--threads N] [--workers 0]

CAPTURES is a capture set with a train split, e.g. made by
``opticsfree simulate --dataset cifar10 --camera seed --split train --out CAPTURES``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from opticsfree.captures.tuples import make_tuples, tuples_path
from opticsfree.training.trainer import train


def run_arm(captures: Path, sampling: str, args: argparse.Namespace, work: Path) -> dict:
    """Train one epoch with ``sampling`` and return its metrics line."""
    out = work / sampling
    cfg = {"captures": str(captures), "loss": args.loss, "backbone": args.backbone, "epochs": 1,
           "checkpoints": [1], "sampling": sampling, "limit": args.limit, "seed": 0,
           "threads": args.threads, "workers": args.workers if sampling == "tuples" else 0}
    t0 = time.perf_counter()
    train(cfg, out, show_progress=False)
    wall = time.perf_counter() - t0
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    line["wall_s"] = wall
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    line["n_train_scenes"] = resolved["n_train_scenes"]
    line["n_tuples"] = resolved.get("n_tuples")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", type=Path)
    ap.add_argument("--loss", default="triplet")
    ap.add_argument("--backbone", default="cnn4")
    ap.add_argument("--limit", type=int, default=None,
                    help="training scenes (class-stratified; default: all). The seed's tuples name "
                         "their references across the whole split, so a limit drops most rows: "
                         "bench a small capture set instead (`make bench` simulates 5,000 images)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0, help="data-loader processes of the tuples arm")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.md")
    args = ap.parse_args()

    if not tuples_path(args.captures, "train").is_file():
        make_tuples(args.captures, "train", seed=0)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        rows = {s: run_arm(args.captures, s, args, work) for s in ("online", "tuples")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = rows["online"]["images_per_s"] / rows["tuples"]["images_per_s"]
    lines = [
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"captures: {args.captures}; loss {args.loss}, backbone {args.backbone}, "
        f"{rows['online']['n_train_scenes']} training scenes ({rows['tuples']['n_tuples']} seed tuples "
        f"whose references are all training scenes), one epoch each, "
        f"tuples data-loader workers: {args.workers}.",
        "",
        "| sampling | rows/s (training steps) | epoch seconds | steps |",
        "| --- | --- | --- | --- |",
    ]
    for s, r in rows.items():
        lines.append(f"| {s} | {r['images_per_s']:.0f} | {r['seconds']:.1f} | {r['steps']} |")
    lines += ["", f"online / tuples speed ratio: **{ratio:.1f}x**"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
