"""Benchmark: inference speed of a classifier with PyTorch and ONNX Runtime, and model sizes.

For each backbone (``cnn4`` and the largest the project has, ``resnet32``) at the CIFAR-10 shape
of the study (3 x 32 x 32 captures, 128-d embeddings, 10 classes, default widths), a classifier
is made with random weights and prototypes (speed does not depend on training) and exported with
:func:`opticsfree.inference.export_onnx` (fp32, verified against PyTorch, and int8). Each arm
computes the same thing, uint8 captures in, class posteriors out:

* ``PyTorch eager``: what ``opticsfree predict`` runs once the captures are decoded (the model's
  embedding, prototype distances, temperature and prior in NumPy float64);
* ``ONNX Runtime fp32`` / ``int8 dynamic`` / ``int8 static``: the exported graph, and its
  int8 copies (``export --int8 [--int8-method static]``; the static one calibrated on the
  benchmark's own random captures).

Measured: images per second at batch 256 (best of ``--repeats`` windows of ``--seconds``), and
the median and 99th-percentile latency of one capture at batch 1 (``--calls`` calls after a
warm-up); ``--threads`` threads for torch and onnxruntime alike. Sizes: the fp32 and int8 ONNX
files, and the PyTorch state dict of the deployed part (lensless tower). Last, ``opticsfree
predict`` end to end on ``--files`` JPEG captures written to a temporary folder (decoding,
preprocessing, embedding, posteriors; the ``cnn4`` classifier; ``--engine torch`` and ``onnx``). Results go to stdout as Markdown
and to ``bench/results/inference.md``.

Usage:
    .venv/bin/python bench/bench_inference.py [--backbones cnn4 resnet32] [--threads 2]
        [--seconds 3] [--repeats 3] [--calls 1000] [--files 5000]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from opticsfree.inference import Classifier, Preprocessing, export_onnx, predict
from opticsfree.inference.adapter import for_inference
from opticsfree.inference.export import reference_posterior, session
from opticsfree.training import TrainedModel
from opticsfree.training.checkpoint import build_model

SIZE, CHANNELS, CLASSES, DIM = 32, 3, 10, 128


def synthetic_classifier(backbone: str) -> Classifier:
    """A classifier of the study's shape with random weights, prototypes and T = 0.1."""
    torch.manual_seed(0)
    classes = [f"class{c}" for c in range(CLASSES)]
    config = {"backbone": backbone, "width": None, "embedding_dim": DIM, "shared": False,
              "pool": "avg", "global_features": 0, "lensless_contrast": False, "loss": "triplet",
              "captures": "synthetic",
              "resolved": {"size": SIZE, "lensless_channels": CHANNELS, "original_channels": CHANNELS,
                           "classes": classes, "has_head": False}}
    model = for_inference(TrainedModel(build_model(config), config, epoch=0))
    protos = np.random.default_rng(0).normal(size=(CLASSES, DIM)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    return Classifier(run=Path(f"synthetic-{backbone}"), epoch=0, model=model, classes=classes,
                      likelihood="metric", prototypes=protos, temperature=0.1,
                      temperature_source="synthetic", threshold=None, threshold_source=None,
                      prior=np.full(CLASSES, 1.0 / CLASSES), prior_name="uniform",
                      preprocessing=Preprocessing(SIZE, CHANNELS))


def throughput(fn, batch: np.ndarray | torch.Tensor, seconds: float,
               repeats: int) -> tuple[float, float]:
    """(images per second, images per CPU-second of this process): the best over ``repeats``
    windows of at least ``seconds`` each. On a machine shared with other jobs the first falls
    with the load; the second measures the work itself (spinning threads count as work)."""
    fn(batch)
    best, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            fn(batch)
            n += len(batch)
        best = max(best, n / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, n / max(time.process_time() - c0, 1e-9))
    return best, best_cpu


def latency(fn, one: np.ndarray | torch.Tensor, calls: int) -> tuple[float, float]:
    """(median, p99) milliseconds of ``fn(one)`` over ``calls`` calls after 50 warm-up calls."""
    for _ in range(50):
        fn(one)
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn(one)
        times[i] = time.perf_counter() - t0
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 99))


def tower_bytes(clf: Classifier) -> int:
    """Size of the saved state dict of the lensless tower (what is deployed)."""
    net = clf.model.model
    keep = {k: v for k, v in net.state_dict().items()
            if k.startswith(("norms.lensless", "towers.lensless", "glob", "head"))}
    buf = io.BytesIO()
    torch.save(keep, buf)
    return buf.tell()


def bench_backbone(backbone: str, args: argparse.Namespace, work: Path) -> list[dict]:
    clf = synthetic_classifier(backbone)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, size=(256, CHANNELS, SIZE, SIZE), dtype=np.uint8))
    res = export_onnx(clf, work / f"{backbone}.onnx", int8=True, images=x, threads=args.threads)
    st = export_onnx(clf, work / f"{backbone}-static.onnx", int8=True, int8_method="static",
                     images=x, threads=args.threads)
    arms = [("PyTorch eager", lambda b: reference_posterior(clf, b), x, tower_bytes(clf), None)]
    for label, path, size, cmp in (
            ("ONNX Runtime fp32", res.path, res.size_bytes, res.fp32),
            ("ONNX Runtime int8 dynamic", res.int8_path, res.int8_size_bytes, res.int8),
            ("ONNX Runtime int8 static", st.int8_path, st.int8_size_bytes, st.int8)):
        sess = session(path, args.threads)
        arms.append((label, lambda b, s=sess: s.run(["posterior"], {"images": b})[0], x.numpy(),
                     size, cmp))
    rows = []
    for label, fn, batch, size, cmp in arms:
        ips, per_cpu = throughput(fn, batch, args.seconds, args.repeats)
        med, p99 = latency(fn, batch[:1], args.calls)
        rows.append({"backbone": backbone, "arm": label, "images_per_s": ips,
                     "images_per_cpu_s": per_cpu, "median_ms": med,
                     "p99_ms": p99, "size_bytes": size,
                     "agreement": None if cmp is None else cmp.agreement,
                     "max_diff": None if cmp is None else cmp.max_posterior_diff})
        print(f"  {backbone:8s} {label:26s} {ips:10,.0f} img/s ({per_cpu:,.0f} per CPU-s)  "
              f"batch 1: {med:.3f} ms median, "
              f"{p99:.3f} ms p99", flush=True)
    return rows


def bench_predict(args: argparse.Namespace, work: Path) -> dict:
    """``predict`` end to end on ``--files`` JPEG captures (the cnn4 classifier)."""
    from PIL import Image

    folder = work / "captures"
    folder.mkdir()
    rng = np.random.default_rng(2)
    base = rng.integers(60, 200, size=(SIZE, SIZE, CHANNELS)).astype(np.int16)
    for i in range(args.files):
        img = np.clip(base + rng.integers(-20, 21, size=base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"cap{i:06d}.jpeg", quality=90)
    clf = synthetic_classifier("cnn4")
    out = {"files": args.files}
    for engine in ("torch", "onnx"):
        predict(clf, [folder], frames_per_scene=1, engine=engine, threads=args.threads)  # warm-up
        best = 0.0
        for _ in range(args.repeats):
            r = predict(clf, [folder], frames_per_scene=1, engine=engine, threads=args.threads)
            assert r.n_predicted == args.files and not r.failures
            best = max(best, r.n_predicted / r.seconds)
        out[engine] = best
        print(f"  predict --engine {engine}: {best:,.0f} captures/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["cnn4", "resnet32"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inference.md")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    try:
        rows = [r for b in args.backbones for r in bench_backbone(b, args, work)]
        pred = bench_predict(args, work) if args.files else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import onnxruntime

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load} (1/5/15 min) "
        f"at the end; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"{args.threads} thread(s). Models: random weights at the study's shape ({CHANNELS} x "
        f"{SIZE} x {SIZE} uint8 captures, {DIM}-d embedding, {CLASSES} classes, default widths); "
        "uint8 captures in, posteriors out. Throughput: best of "
        f"{args.repeats} windows of {args.seconds:g} s at batch 256; latency: {args.calls} calls "
        "at batch 1. Images per CPU-second: the same windows counted in this process's CPU time "
        "(what the work costs whatever else runs on the machine). Size: ONNX file, or the "
        "PyTorch state dict of the lensless tower.",
        "",
        "| backbone | runtime | images/s (batch 256) | images per CPU-second | median latency (ms, "
        "batch 1) | p99 latency (ms) | model size (MB) | classes agree with PyTorch | max "
        "posterior difference |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        agree = "-" if r["agreement"] is None else f"{100 * r['agreement']:.2f}%"
        diff = "-" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
        lines.append(f"| `{r['backbone']}` | {r['arm']} | {r['images_per_s']:,.0f} | "
                     f"{r['images_per_cpu_s']:,.0f} | "
                     f"{r['median_ms']:.3f} | {r['p99_ms']:.3f} | {r['size_bytes'] / 1e6:.2f} | "
                     f"{agree} | {diff} |")
    if pred:
        lines += ["", f"`opticsfree predict` end to end (read + decode + preprocess + embed + "
                      f"posterior, `cnn4`), {pred['files']:,} JPEG files of 32 x 32, best of "
                      f"{args.repeats}: {pred['torch']:,.0f} captures/s with `--engine torch` "
                      f"(the default), {pred['onnx']:,.0f} captures/s with `--engine onnx`."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
