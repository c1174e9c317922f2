"""Benchmark: simulate all of CIFAR-10 (60,000 images) with the `seed` camera, files written.

Compares, on the same images, the transfer-matrix camera (batched matrix multiply) with a
straightforward per-image FFT convolution (how mask-camera simulators work), and reports where
the time of a full simulation goes (light transport + sensor noise vs image encoding/writing).

Usage:
    OPTICSFREE_DATA=../shared/data .venv/bin/python bench/bench_simulate.py [--limit N] [--out DIR]

Prints a Markdown table (also written to bench/results/simulate.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.data import load_dataset
from opticsfree.optics import Camera, fft_convolve, load_camera_config
from opticsfree.optics.display import display_luminance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="images per split (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the set (default: a temp dir)")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    ds = load_dataset("cifar10", data=args.data)
    t_load = time.perf_counter() - t0
    cfg = load_camera_config("seed")
    n = sum(min(len(s), args.limit or len(s)) for s in ds.splits.values())
    images = torch.cat([torch.from_numpy(s.images[: args.limit]).permute(0, 3, 1, 2) for s in ds.splits.values()])

    cam = Camera(cfg, (32, 32), 3)
    t0 = time.perf_counter()
    cam.transfer_matrix()
    t_h = time.perf_counter() - t0

    # 1. light transport alone: batched matrix multiply vs per-image FFT convolution
    lum = display_luminance(images[:10000].float() / 255, cfg.display)
    t0 = time.perf_counter()
    for i in range(0, len(lum), 1024):
        cam.spatial(lum[i:i + 1024])
    t_mm = (time.perf_counter() - t0) / len(lum)
    # PSF for the FFT baseline: the response of the central output pixel over display offsets
    H = cam.transfer_matrix().reshape(32, 32, 32, 32)
    psf = H[16, 16].flip(0, 1).contiguous()
    t0 = time.perf_counter()
    for i in range(len(lum)):
        fft_convolve(lum[i:i + 1], psf)
    t_fft = (time.perf_counter() - t0) / len(lum)

    # 2. the full capture (transport + nuisances + noise chain), no files
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for i in range(0, len(images), 1024):
        cam.capture(images[i:i + 1024], g)
    t_capture = time.perf_counter() - t0

    # 3. the full command: capture set written (PNG originals + JPEG captures)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-sim-"))
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    simulate_capture_set(ds, cfg, out, limit=args.limit, seed=0)
    t_total = time.perf_counter() - t0
    if args.out is None:
        shutil.rmtree(out)

    rows = [
        ("images simulated (train + test)", f"{n:,}"),
        ("dataset load (decoded-array cache)", f"{t_load:.1f} s"),
        ("transfer matrix build (1024 x 1024, cached after first use)", f"{t_h:.1f} s"),
        ("light transport, batched H matmul", f"{t_mm * 1e6:.1f} us/image"),
        ("light transport, per-image FFT convolution (baseline)", f"{t_fft * 1e6:.1f} us/image"),
        ("speed-up of H matmul over per-image FFT", f"{t_fft / t_mm:.1f}x"),
        ("full capture (transport + noise chain), all images, no files", f"{t_capture:.1f} s"),
        ("full `simulate` incl. PNG + JPEG files (2 encoder processes)", f"{t_total:.1f} s"),
        ("share of `simulate` spent outside the camera model (encoding, writing)",
         f"{max(0.0, 1 - t_capture / t_total) * 100:.0f}%"),
    ]
    md = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"data: {ds.source}", "", "| measurement | value |", "| --- | --- |"]
    md += [f"| {a} | {b} |" for a, b in rows]
    text = "\n".join(md) + "\n"
    print(text)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / "simulate.md").write_text(text)


if __name__ == "__main__":
    main()
