"""Benchmark: ablation of the full-strength recipe on the validation split.

Trains the recipe of ``bench_recipe.py`` (``RECIPE`` there, with its one mirrored copy of
every training scene re-captured by the camera) and one variant per option with that option changed,
all on the same capture set, epochs, seed and threads, and reports for each the validation
accuracy (the run's own held-out part of the train split; the test split is never read), the
epoch of its best validation accuracy, the training time and the wall time of the whole run
(loading, re-captures and initialisation included). Runs that finished are read back, so an
interrupted benchmark resumes where it stopped.

Usage:
    .venv/bin/python bench/bench_ablation.py CAPTURES [--epochs 10] [--threads 2]
        [--out runs/bench-ablation] [--only NAME ...]

Results go to stdout as Markdown and to ``bench/results/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from bench_recipe import RECIPE, publish

from opticsfree.training import train

BASE = dict(RECIPE)

#: (name, what changes, overrides of BASE)
VARIANTS: list[tuple[str, str, dict]] = [
    ("recipe", "the recipe (all options as in docs/results.md, 'Classification on raw captures')", {}),
    ("no-front-end", "plain lensless tower (no physics-informed front end)", {"front_end": False}),
    ("auto-contrast", "auto-contrast instead of the front end", {"front_end": False, "lensless_contrast": True}),
    ("front-end-trained", "front end trained at 0.01 x the rate (not frozen)", {"front_end_lr_scale": 0.01}),
    ("no-scene-augment", "no augmented scenes", {"scene_augment": "none"}),
    ("crop-flip-scenes", "scenes shifted and mirrored (crop-flip) instead of mirrored", {"scene_augment": "crop-flip"}),
    ("crop-flip-refresh", "scenes shifted and mirrored, new copies every epoch (scene_refresh)",
     {"scene_augment": "crop-flip", "scene_refresh": True}),
    ("no-label-smoothing", "label smoothing 0 (instead of 0.2)", {"label_smoothing": 0.0}),
    ("weight-averaging", "+ weight averaging (EMA decay 0.98 per step)", {"weight_averaging": 0.98}),
    ("embedding-64", "embedding size 64 (instead of 128)", {"embedding_dim": 64}),
    ("cnn4", "backbone cnn4 (width 32, avg pool) instead of wvgg 16", {"backbone": "cnn4", "width": 32, "pool": "avg"}),
    ("adamw", "AdamW 2e-3, weight decay 0.05 (instead of SGD 0.1)", {"optimizer": "adamw", "lr": 0.002}),
    ("triplet", "triplet loss (the seed's), AdamW 2e-3, prototype classifier", {"loss": "triplet", "optimizer": "adamw", "lr": 0.002, "label_smoothing": 0.0}),
    ("quadruplet", "quadruplet loss (the seed's), AdamW 2e-3, prototype classifier", {"loss": "quadruplet", "optimizer": "adamw", "lr": 0.002, "label_smoothing": 0.0}),
]


def _finished(run: Path, epochs: int) -> list[dict] | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows if rows and rows[-1]["epoch"] == epochs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("captures")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-ablation")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    walls_path = out / "wall_seconds.json"
    walls = json.loads(walls_path.read_text()) if walls_path.is_file() else {}
    results = []
    for name, what, over in VARIANTS:
        if args.only and name not in args.only:
            continue
        run = out / name
        rows = _finished(run, args.epochs)
        if rows is None:
            shutil.rmtree(run, ignore_errors=True)  # an interrupted variant starts again
            cfg = {**BASE, **over, "captures": args.captures, "epochs": args.epochs,
                   "checkpoints": [args.epochs], "threads": args.threads}
            t0 = time.perf_counter()
            train(cfg, run, show_progress=False)
            walls[name] = time.perf_counter() - t0
            out.mkdir(parents=True, exist_ok=True)
            walls_path.write_text(json.dumps(walls, indent=1))
            rows = _finished(run, args.epochs)
        best = max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))
        results.append((name, what, rows, best, walls.get(name)))
        print(f"{name}: best val {best['val_accuracy']:.4f} at epoch {best['epoch']}", flush=True)
    cfg0 = json.loads((out / results[0][0] / "config.json").read_text()) if results else {}
    lines = [f"# Recipe ablation on validation ({platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {args.threads} threads)", "",
             f"captures: `{args.captures}` ({cfg0.get('resolved', {}).get('n_train_scenes', '?')} training and "
             f"{cfg0.get('resolved', {}).get('n_val_scenes', '?')} validation scenes); {args.epochs} epochs; "
             f"the recipe: `{json.dumps(BASE)}`; validation accuracy in percent (the head's argmax for "
             "`ce`, the nearest class prototype of the train originals otherwise).", "",
             "| variant | change | best val | at epoch | last val | train s | scenes/s | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, what, rows, best, wall in results:
        train_s = sum(r["seconds"] for r in rows)
        scenes = sum(r["images_per_s"] * r["seconds"] for r in rows) / max(train_s, 1e-9)
        lines.append(f"| {name} | {what} | {100 * best['val_accuracy']:.1f} | {best['epoch']} | "
                     f"{100 * rows[-1]['val_accuracy']:.1f} | {train_s:.0f} | {scenes:.0f} | "
                     + (f"{wall:.0f}" if wall is not None else "-") + " |")
    publish(lines, "ablation.md")


if __name__ == "__main__":
    main()
