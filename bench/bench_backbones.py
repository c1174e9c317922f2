"""Benchmark: training-step speed of the backbones (lensless tower + classifier head).

One SGD (Nesterov) step of cross-entropy on a batch of random uint8 32 x 32 captures, float32,
for each backbone; images per second over ``--steps`` timed steps after one warm-up step (the
best step, so other load on the machine distorts it least). Like every training run on the
CPU, it first keeps freed memory for reuse (``opticsfree.utils.runtime.keep_freed_memory``; run it with
``OPTICSFREE_KEEP_FREED_MEMORY=0`` to measure glibc's defaults). Results go to stdout as
Markdown and to ``bench/results/backbones.md`` (``backbones-glibc-defaults.md`` with glibc's
defaults).

Usage:
    .venv/bin/python bench/bench_backbones.py [--batch 256] [--steps 4] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from opticsfree.models.embedding import EmbeddingModel
from opticsfree.utils.runtime import keep_freed_memory

#: (label, EmbeddingModel keyword arguments)
ARMS = [
    ("cnn4 (width 32, avg)", {"backbone": "cnn4"}),
    ("wvgg (width 16, max)", {"backbone": "wvgg", "width": 16, "pool": "max"}),
    ("wvgg (width 16, max) + front end", {"backbone": "wvgg", "width": 16, "pool": "max", "front_end": True}),
    ("wvgg (width 32, max)", {"backbone": "wvgg", "width": 32, "pool": "max"}),
    ("resnet20 (width 16, avg)", {"backbone": "resnet20"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (args.batch,))
    lines = [f"# Backbone training speed ({platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, batch {args.batch}, float32, freed memory "
             f"{'kept' if kept else 'returned (glibc defaults)'})", "",
             "| backbone | parameters | images/s |", "| --- | --- | --- |"]
    for label, kw in ARMS:
        m = EmbeddingModel(n_classes=10, **kw)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        best = float("inf")
        for i in range(args.steps + 1):
            t = time.perf_counter()
            loss = F.cross_entropy(m.logits(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                best = min(best, time.perf_counter() - t)
        n = sum(p.numel() for p in m.tower("lensless").parameters()) + sum(p.numel() for p in m.head.parameters())
        lines.append(f"| {label} | {n:,} | {args.batch / best:.0f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/backbones.md" if kept else "bench/results/backbones-glibc-defaults.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
