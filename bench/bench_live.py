"""Benchmark: frames per second of ``opticsfree live`` on the virtual rig.

For ``cnn4`` and the recipe's backbone (``wvgg`` width 16, max pooling), a classifier of the
study's shape with random weights and prototypes (speed does not depend on training: the
synthetic classifiers of ``bench_inference.py``) classifies the virtual rig's camera stream
(configs/rigs/virtual-seed.toml, one random 32 x 32 scene shown per frame) frame by frame, as
``live`` does: batch 1, ``predict``'s preprocessing and posteriors. Reported separately:

* ``model + preprocessing``: frames/s of the classifier alone (the goal: >= 30 for cnn4);
* ``camera``: the virtual camera's own cost per frame (drawing the scene, the simulator's
  light transport and noise chain), which a real camera replaces by its frame time;
* ``loop``: frames/s of the whole loop (display, camera, model).

Results go to stdout as Markdown and to ``bench/results/live.md``.

Usage:
    .venv/bin/python bench/bench_live.py [--frames 300] [--threads 2] [--engine torch|onnx]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import synthetic_classifier  # noqa: E402  the same synthetic classifiers

from opticsfree.inference.live import OnnxLiveModel, RunLiveModel, run_live  # noqa: E402
from opticsfree.rig import load_rig_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RIG = ROOT / "configs" / "rigs" / "virtual-seed.toml"


def recipe_classifier():
    """``wvgg`` width 16 with max pooling (the recipe's backbone, without its front end)."""
    import bench_inference as bi

    real = bi.build_model

    def build(config):
        return real({**config, "width": 16, "pool": "max"})

    bi.build_model = build
    try:
        return synthetic_classifier("wvgg")
    finally:
        bi.build_model = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rig = load_rig_config(RIG)
    rng = np.random.default_rng(0)
    scenes = [(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), None) for _ in range(64)]
    rows = []
    for name, make in (("cnn4", lambda: synthetic_classifier("cnn4")), ("wvgg w16", recipe_classifier)):
        clf = make()
        model = RunLiveModel(clf)
        if args.engine == "onnx":
            tmp = Path(tempfile.mkdtemp()) / "m.onnx"
            _export(clf, tmp)
            model = OnnxLiveModel(tmp, args.threads)
        run_live(model, rig, frames=20, scenes=scenes)  # warm-up (transfer matrix, first calls)
        rep = run_live(model, rig, frames=args.frames, scenes=scenes).to_json()
        rows.append((name, rep))
    lines = [f"# `opticsfree live` on the virtual rig ({platform.machine()}, {args.threads} threads, "
             f"engine {args.engine}, {args.frames} frames, batch 1)", "",
             "| backbone | model + preprocessing (frames/s) | model ms/frame | virtual camera ms/frame | loop (frames/s) |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['model_frames_per_s']:.0f} | {r['model_ms_per_frame']:.2f} | "
                     f"{r['camera_ms_per_frame']:.2f} | {r['frames_per_s']:.0f} |")
    lines += ["", "Command: `.venv/bin/python bench/bench_live.py` (configs/rigs/virtual-seed.toml; random "
              "weights, random 32 x 32 scenes)."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / ("live.md" if args.engine == "torch" else "live-onnx.md")
    out.write_text(text, encoding="utf-8")


def _export(clf, path: Path) -> None:
    """Export without the test-set verification (a synthetic classifier has no capture set)."""
    from opticsfree.inference.export import _example, _set_metadata, _torch_export, deployable_graph, metadata, output_names

    graph = deployable_graph(clf)
    _torch_export(graph, _example(clf), path, output_names(clf))
    _set_metadata(path, metadata(clf, "uint8"))


if __name__ == "__main__":
    main()
