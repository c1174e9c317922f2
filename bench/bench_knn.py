"""Benchmark: exact kNN search with faiss ``IndexFlatL2`` against ``torch.cdist`` + ``topk``.

The ``knn`` classifier of ``opticsfree evaluate`` searches the k nearest train originals of
every lensless capture: at the default scale a gallery of 45,000 embeddings of dimension 128
(CIFAR-10 train split minus the 10% validation hold-out) and 10,000 test queries, with k up to
20 (k is chosen on val from 1, 3, 5, 10, 20 with one search at k = 20). Both arms get the same
float32 unit vectors and must return the same neighbours; times are the minimum over
``--repeats`` runs (the machine is shared, so the minimum is the least disturbed run), in
seconds, with ``--threads`` torch/faiss threads. The torch arm is
:func:`opticsfree.evaluation.knn_classifier.exact_knn` (the code the classifier runs), queries
in chunks of ``--chunk`` rows so that the distance block stays small.

Results go to stdout as Markdown and to ``bench/results/knn.md``. faiss-cpu is not a dependency
of the package (this benchmark is why): ``pip install faiss-cpu`` to run it.

Usage:
    .venv/bin/python bench/bench_knn.py [--gallery 45000] [--queries 10000] [--dim 128]
        [--threads 2] [--repeats 3] [--chunk 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from opticsfree.evaluation.knn_classifier import exact_knn

KS = (1, 5, 10, 20)


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gallery", type=int, default=45000)
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "knn.md")
    args = p.parse_args()

    try:
        import faiss
    except ImportError:
        raise SystemExit("bench_knn.py compares against faiss: pip install faiss-cpu") from None

    g = unit_vectors(args.gallery, args.dim, 0)
    q = unit_vectors(args.queries, args.dim, 1)
    gt, qt = torch.from_numpy(g), torch.from_numpy(q)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
        for k in KS:
            def run_faiss():
                index = faiss.IndexFlatL2(args.dim)
                index.add(g)
                return index.search(q, k)

            t_faiss, (fd, fi) = best_of(run_faiss, args.repeats)
            t_torch, (td, ti) = best_of(lambda: exact_knn(qt, gt, k, args.chunk), args.repeats)
            same = float((fi == ti.numpy()).mean())
            dist_err = float(np.abs(fd - td.numpy()).max())
            rows.append((threads, k, t_faiss, t_torch, same, dist_err))
            print(f"threads {threads} k {k}: faiss {t_faiss:.3f} s, torch {t_torch:.3f} s, "
                  f"same neighbours {same:.5f}, max |d2 diff| {dist_err:.1e}", flush=True)

    load = os.getloadavg()
    head = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end; "
            f"torch {torch.__version__}, faiss {faiss.__version__}. Gallery {args.gallery} x "
            f"{args.dim} float32 unit vectors, {args.queries} queries; seconds for all queries "
            f"(index build included for faiss), minimum of {args.repeats} runs; torch: "
            f"`torch.cdist` + `topk` in chunks of {args.chunk} queries.\n")
    lines = [head, "| threads | k | faiss IndexFlatL2 (s) | torch cdist + topk (s) | faiss speed-up | "
                   "same neighbours | max squared-distance difference |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for threads, k, tf, tt, same, err in rows:
        lines.append(f"| {threads} | {k} | {tf:.3f} | {tt:.3f} | {tt / tf:.2f}x | {100 * same:.3f}% | "
                     f"{err:.1e} |")
    lines.append("")
    for threads in args.threads:
        ups = sorted(tt / tf for th, _, tf, tt, _, _ in rows if th == threads)
        lines.append(f"faiss speed-up with {threads} thread(s): {ups[0]:.2f}x to {ups[-1]:.2f}x "
                     f"over k = {', '.join(map(str, KS))}.")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
