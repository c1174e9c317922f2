"""Benchmark: ``rig calibrate`` on the virtual rig against the simulator's true transfer matrix.

On configs/rigs/virtual-seed.toml (the `seed` preset, 32 x 32 captures), a 32 x 32 Hadamard
calibration (1,024 patterns and their complements, 64 held-out random patterns, the exposure
locked with a white frame's brightest pixel at 90% of full scale) is run

* noise-free (``camera.noise = false``: quantisation only, 10-bit raw),
* with the preset's sensor noise (shot, read, dark, fixed pattern) on a rigid rig
  (``camera.nuisances = false``),
* with the preset's per-capture display jitter and flicker as well (the preset as it is),

and compared with the true matrix (relative Frobenius error, the fixed-pattern gain included;
both normalised so that a white display gives a mean response of 1). Then, on CIFAR-10 scenes
captured by the same rig (``--train`` and ``--test`` scenes), the Tikhonov inverse (lambda and
prior chosen on a validation tenth of the train scenes) is built from the measured matrix and
from the true one, and the classic pair calibration (``opticsfree calibrate``: ridge regression
from natural-image pairs) is compared with the true matrix too. The time a calibration takes on
hardware at 30 frames/s is computed from its frame count. Results go to stdout as Markdown and to
``bench/results/rig.md``.

Usage:
    OPTICSFREE_DATA=../shared/data .venv/bin/python bench/bench_rig.py [--repeats 8] [--train 5000] [--test 1000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from opticsfree.captures.loader import load_captures
from opticsfree.data import load_dataset
from opticsfree.data.split import split_scenes
from opticsfree.optics import load_camera_config
from opticsfree.reconstruction.calibration import calibrate, load_calibration
from opticsfree.reconstruction.sensor_model import camera_operator
from opticsfree.reconstruction.tikhonov import fit_tikhonov, psnr
from opticsfree.rig import load_rig_config
from opticsfree.rig.calibrate import patterns_time, rig_calibrate
from opticsfree.rig.capture import rig_capture

ROOT = Path(__file__).resolve().parents[1]
RIG = ROOT / "configs" / "rigs" / "virtual-seed.toml"


def with_camera(rig, **changes):
    return rig.model_copy(update={"camera": rig.camera.model_copy(update=changes)})


def true_matrix(size: int = 32) -> torch.Tensor:
    op, sensor, _ = camera_operator(load_camera_config("seed"), size, 3)
    a = torch.kron(op.colour.contiguous(), op.spatial.contiguous()) * sensor.gain.reshape(-1, 1)
    return a / a.sum(1).mean()


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a / a.sum(1).mean()
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--test", type=int, default=1000)
    args = ap.parse_args()
    rig = load_rig_config(RIG)
    work = Path(tempfile.mkdtemp(prefix="bench-rig-"))
    rows = []
    for name, r, reps in (("noise-free", with_camera(rig, noise=False), 1),
                          ("sensor noise, rigid rig", with_camera(rig, nuisances=False), args.repeats),
                          ("sensor noise + the preset's display jitter and flicker", rig, args.repeats)):
        t0 = time.perf_counter()
        cal = rig_calibrate(r, work / f"{len(rows)}.npz", size=32, repeats=reps)
        rep = cal.to_json()
        rows.append((name, reps, rep, time.perf_counter() - t0, work / f"{len(rows)}.npz"))
    truth = true_matrix()

    # Tikhonov from the measured (rigid rig) and the true matrix, on CIFAR-10 captured by the rig
    ds = load_dataset("cifar10")
    sets = {}
    for split, n in (("train", args.train), ("test", args.test)):
        sets[split] = rig_capture(ds, rig, work / f"cifar-{split}", splits=[split], limit=n).out
    train = load_captures(sets["train"], "train")
    test = load_captures(sets["test"], "test")
    tr, va = split_scenes(train.ids, train.labels, 0.1, 0)
    measured = load_calibration(rows[1][4])
    op, sensor, gamma = camera_operator(load_camera_config("seed"), 32, 3)
    tik = {}
    for label, (a, s) in (("measured H (sensor noise, rigid rig)", (measured.operator, measured.sensor)),
                          ("true H", (op, sensor))):
        s.exposure, s.scale = "per-image", 1.0
        s.tau = s.tmax_scale = None
        model = fit_tikhonov(a, s, gamma, train.lensless[tr], train.original[tr], train.lensless[va], train.original[va])
        tik[label] = float(psnr(model.reconstruct(test.lensless).float() / 255, test.original.float() / 255).mean())
    calibrate(sets["train"], work / "pairs.npz")
    pairs_err = rel_error(load_calibration(work / "pairs.npz").operator.dense.double(), truth.double())

    lines = [f"# `rig calibrate` on the virtual rig ({platform.machine()}, torch {torch.__version__})", "",
             "configs/rigs/virtual-seed.toml (the `seed` preset), 32 x 32 Hadamard patterns, exposure locked with the "
             "white frame's brightest pixel at 90% of full scale. Error: relative Frobenius error against the "
             "simulator's true H (fixed-pattern gain included; both normalised to a mean white response of 1).", "",
             "| noise | repeats | frames | wall time (s) | error vs true H | held-out residual | read noise (e-) | full well (e-) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, reps, rep, sec, _ in rows:
        n = rep["noise"]
        rn = "-" if n.get("read_noise_e") is None else f"{n['read_noise_e']:.2f}"
        fw = "-" if n.get("effective_full_well_e") is None else f"{n['effective_full_well_e']:.0f}"
        lines.append(f"| {name} | {reps} | {rep['frames']:,} | {sec:.1f} | {100 * rep['true_h_relative_error']:.2f}% | "
                     f"{100 * rep['held_out_relative_error']:.2f}% | {rn} | {fw} |")
    t = patterns_time(32, args.repeats, fps=30, discard=1)
    lines += ["", f"On hardware at 30 frames/s with one frame discarded per pattern: {t['frames']:,} frames, "
              f"{t['seconds'] / 60:.1f} min for {args.repeats} repeats ({t['patterns_per_repeat']:,} patterns each).",
              "", f"Tikhonov on {args.test:,} CIFAR-10 test scenes captured by the rig (lambda and prior chosen on "
              f"{len(va):,} validation scenes of {args.train:,} train scenes; PSNR per image, data range 1, mean):", "",
              "| operator | test PSNR (dB) |", "| --- | --- |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in tik.items()]
    lines += ["", f"Pair calibration (`opticsfree calibrate` on the {args.train:,} captured train scenes, ridge from "
              f"natural images): error vs true H {100 * pairs_err:.1f}%.", "",
              f"Command: `OPTICSFREE_DATA=../shared/data .venv/bin/python bench/bench_rig.py --repeats {args.repeats} "
              f"--train {args.train} --test {args.test}` (data: ../shared/data/cifar10-jpg.tar.gz)."]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / "rig.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
