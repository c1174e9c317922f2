"""Run a fixed list of CLI commands on a tiny dataset and record a digest of every file they write.

A refactoring that should not change results is checked by running this before and after it
(the same command lines, seeds and data) and comparing the digests::

    # the code in the working tree
    .venv/bin/python bench/check_outputs.py --out /tmp/outputs-new
    # another commit: a worktree of it first on the import path
    git worktree add /tmp/old-tree <commit>
    PYTHONPATH=/tmp/old-tree/src .venv/bin/python bench/check_outputs.py --out /tmp/outputs-old
    .venv/bin/python bench/check_outputs.py --compare /tmp/outputs-old /tmp/outputs-new

Run it from the repository root (the rig command reads ``configs/rigs/virtual-seed.toml``). Every
command runs as ``python -c 'from opticsfree.cli.main import app; app()' ARGS`` (so the
``PYTHONPATH`` decides which code runs) on the built-in ``digits`` dataset (no download), on one
thread, in one fixed folder (``--work``, default ``/tmp/opticsfree-check-outputs``: paths end up
inside checkpoints and cache keys, so both runs must use the same one); the outputs are then
moved to ``--out``. What a file's digest covers:

- JSON and JSON-lines files are compared by content, without the keys that measure time or
  name the machine (:data:`VOLATILE_KEYS`) and with the output folder replaced by ``<OUT>``;
- CSV files without the columns named like those keys; other text files (Markdown, TOML, logs)
  with the output folder replaced and without the lines of wall time (:data:`VOLATILE_TEXT`);
- not at all: caches (``.cache/``, ``cache/``: keyed by file times) and the study reports
  (``report.md``/``report.html``: generated from ``results.json``, which is compared, with the
  date and wall times in their text);
- PyTorch files (checkpoints, models, caches) by their tensors (dtype, shape, bytes) and the
  rest of their content as JSON is (a checkpoint keeps its metrics rows, with their times);
- every other file (NumPy archives, ONNX graphs, PNG figures) byte for byte.

``--compare`` lists the files whose digests differ, those only in one run, and the commands whose
exit status differs; it exits 1 when anything differs. Running the same code twice gives equal
digests (that is what the volatile lists are for).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: JSON keys that measure time, speed or the machine (left out of the digests).
VOLATILE_KEYS = {"seconds", "images_per_s", "val_seconds", "wall_s", "elapsed_s", "started", "finished",
                 "start", "end", "time", "date", "created", "host", "hostname", "node", "pid", "duration_s",
                 "scenes_per_s", "fps", "timestamp", "timeline", "python", "platform", "torch", "cpu",
                 "frame_s", "latency_ms", "read_s", "decode_s", "simulate_s", "total_s", "stage_seconds",
                 "train_seconds", "eval_seconds", "wall_time", "elapsed"}
#: Text lines that carry wall time (left out of the digests).
VOLATILE_TEXT = re.compile(r"\(\d+(\.\d+)? s\)|(wall|seconds|elapsed|took)|^\s*\|?\s*(started|finished|date)",
                           re.IGNORECASE)
TEXT_SUFFIXES = {".csv", ".md", ".txt", ".toml", ".log", ".tsv"}
PY = [sys.executable, "-c", "from opticsfree.cli.main import app; app()"]


def commands(w: Path, inputs: Path) -> list[tuple[str, list[str]]]:
    """The command lines, in order (later ones read what earlier ones wrote), named."""
    s = str(w / "set")
    tiny = ["--set", "backbone=cnn4", "--set", "width=4", "--set", "embedding_dim=16", "--set", "batch_size=20",
            "--set", "threads=1", "--set", "scene_augment=none", "--set", "size=16"]
    return [
        ("simulate", ["simulate", "--dataset", "digits", "--camera", "seed", "--split", "all", "--limit", "60",
                      "--seed", "0", "--workers", "1", "--out", s]),
        ("check", ["check", s, "--json"]),
        ("quality", ["quality", s, "--split", "test", "--size", "16", "--json"]),
        ("tuples", ["tuples", s, "--split", "train", "--seed", "0"]),
        ("show", ["show", s, "--out", str(w / "show.png")]),
        ("camera-info", ["camera", "info", "seed", "--dataset", "digits", "--limit", "30", "--size", "16",
                         "--json", "--out", str(w / "info")]),
        ("camera-sweep", ["camera", "sweep", "seed", "--param", "geometry.gap_mm=0.8:1.2:2", "--dataset",
                          "digits", "--limit", "20", "--size", "16", "--out", str(w / "sweep")]),
        ("train-triplet", ["train", s, "--recipe", "seed", "--loss", "triplet", "--epochs", "2", *tiny,
                           "--quiet", "--out", str(w / "run-triplet")]),
        ("train-ce", ["train", s, "--recipe", "fast", "--loss", "ce", "--epochs", "2", *tiny, "--quiet",
                      "--out", str(w / "run-ce")]),
        ("evaluate", ["evaluate", str(w / "run-triplet"), "--json", "--out", str(w / "eval-triplet")]),
        ("evaluate-knn", ["evaluate", str(w / "run-triplet"), "--classifier", "knn", "--json", "--out",
                          str(w / "eval-knn")]),
        ("evaluate-threshold", ["evaluate", str(w / "run-triplet"), "--classifier", "threshold", "--json", "--out",
                                str(w / "eval-threshold")]),
        ("evaluate-head", ["evaluate", str(w / "run-ce"), "--classifier", "head", "--json", "--out",
                           str(w / "eval-head")]),
        ("bayes", ["bayes", str(w / "run-triplet"), "--json", "--out", str(w / "bayes")]),
        ("bayes-ce", ["bayes", str(w / "run-ce"), "--json", "--out", str(w / "bayes-ce")]),
        ("predict", ["predict", str(w / "run-ce"), str(inputs), "--top", "3", "--out", str(w / "predict.csv")]),
        ("export", ["export", str(w / "run-ce"), "--out", str(w / "model.onnx")]),
        ("calibrate", ["calibrate", s, "--out", str(w / "camera.npz")]),
        ("recon-tikhonov", ["reconstruct", "train", s, "--method", "tikhonov", "--out", str(w / "rec-tik")]),
        ("recon-unet", ["reconstruct", "train", s, "--method", "unet", "--recipe", "plain", "--epochs", "1",
                        "--set", "width=4", "--threads", "1", "--out", str(w / "rec-unet")]),
        ("recon-unet-fe", ["reconstruct", "train", s, "--method", "unet", "--epochs", "1", "--set", "width=4",
                           "--set", "scene_augment=none", "--threads", "1", "--out", str(w / "rec-unet-fe")]),
        ("recon-unet-member", ["reconstruct", "train", s, "--method", "unet", "--recipe", "plain", "--epochs",
                               "1", "--set", "width=4", "--set", "member=1", "--threads", "1", "--out",
                               str(w / "rec-unet1")]),
        ("recon-ensemble", ["reconstruct", "ensemble", str(w / "rec-unet"), str(w / "rec-unet1"), "--out",
                            str(w / "rec-ens")]),
        ("recon-bijective", ["reconstruct", "train", s, "--method", "bijective", "--recipe", "plain", "--epochs",
                             "1", "--threads", "1", "--out", str(w / "rec-bij")]),
        ("recon-apply", ["reconstruct", "apply", str(w / "rec-tik"), s, "--out", str(w / "set-tik")]),
        ("rig-capture", ["rig", "capture", "--rig", "configs/rigs/virtual-seed.toml", "--dataset", "digits",
                         "--split", "test", "--limit", "20", "--out", str(w / "rig")]),
        ("run-study", ["run", str(w / "tiny.toml"), "--out", str(w / "study")]),
    ]


TINY_STUDY = """
[study]
name = "tiny"
seed = 0

[data]
dataset = "digits"
limit = 60

[captures]
camera = "seed"
quality_size = 16

[reconstruct]
methods = ["tikhonov"]

[train]
losses = ["triplet"]
images = ["lensless", "tikhonov"]
epochs = 2
checkpoints = [1, 2]

[train.options]
backbone = "cnn4"
width = 8
size = 16
embedding_dim = 16
batch_size = 20

[baselines]
ce = true
upper_bound = true

[evaluate]
classifiers = ["prototype", "threshold"]
bootstrap = 20

[bayes]
enabled = true

[report]
samples = 4
"""


def volatile(key: str) -> bool:
    """A JSON key that measures time or names the machine."""
    return key in VOLATILE_KEYS or "seconds" in key or key.startswith("wall_") or key.endswith("_per_s")


def _scrub(obj: Any, root: str) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v, root) for k, v in obj.items() if not volatile(k)}
    if isinstance(obj, list):
        return [_scrub(v, root) for v in obj]
    if isinstance(obj, str):
        return obj.replace(root, "<OUT>")
    return obj


def _canonical(obj: Any, root: str) -> Any:
    """A JSON-able form of a loaded PyTorch file: tensors by digest, the rest scrubbed."""
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.to(torch.uint8) if t.dtype == torch.bool else t.reshape(-1).view(torch.uint8)
        return f"tensor {t.dtype} {tuple(t.shape)} {hashlib.sha256(raw.numpy().tobytes()).hexdigest()}"
    if isinstance(obj, dict):
        return {str(k): _canonical(v, root) for k, v in obj.items() if not (isinstance(k, str) and volatile(k))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, root) for v in obj]
    if isinstance(obj, str):
        return obj.replace(root, "<OUT>")
    if isinstance(obj, (int, float, bool)) or obj is None:
        return obj
    return repr(obj).replace(root, "<OUT>")


def compared(path: Path, work: Path) -> bool:
    """Whether an output file is compared (module doc)."""
    parts = path.relative_to(work).parts
    return path.is_file() and ".cache" not in parts and parts[0] != "cache" and \
        path.name not in ("report.md", "report.html")


def digest(path: Path, root: str) -> str:
    """The digest of one output file (module doc)."""
    data = path.read_bytes()
    if path.suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
            data = json.dumps(_canonical(obj, root), sort_keys=True, default=str).encode()
        except Exception:  # not a torch file: compared byte for byte
            pass
    elif path.suffix in (".json", ".jsonl", ".out"):  # .out: a command's output, JSON or text
        try:
            text = data.decode()
            objs = ([json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl"
                    else [json.loads(text)])
            data = json.dumps(_scrub(objs, root), sort_keys=True).encode()
        except (UnicodeDecodeError, json.JSONDecodeError):
            if path.suffix == ".out":
                return digest_text(data, root)
    elif path.suffix == ".csv":  # without the columns of time
        rows = list(csv.reader(io.StringIO(data.decode(errors="replace").replace(root, "<OUT>"))))
        keep = [i for i, h in enumerate(rows[0] if rows else []) if not volatile(h)]
        data = json.dumps([[r[i] for i in keep if i < len(r)] for r in rows]).encode()
    elif path.suffix in TEXT_SUFFIXES:
        return digest_text(data, root)
    return hashlib.sha256(data).hexdigest()


def digest_text(data: bytes, root: str) -> str:
    """The digest of a text without the output folder and the lines of wall time."""
    text = data.decode(errors="replace").replace(root, "<OUT>")
    return hashlib.sha256("\n".join(line for line in text.splitlines()
                                     if not VOLATILE_TEXT.search(line)).encode()).hexdigest()


def run_all(out: Path, work: Path) -> dict[str, Any]:
    """Run every command in ``work``, move the outputs to ``out/work`` and write ``out/digests.json``."""
    for d in (out, work):
        if d.exists():
            shutil.rmtree(d)
    w = work
    w.mkdir(parents=True)
    out.mkdir(parents=True)
    (w / "tiny.toml").write_text(TINY_STUDY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SDL_VIDEODRIVER": "dummy",
           "SDL_AUDIODRIVER": "dummy", "OPTICSFREE_CACHE": str(w / "cache")}
    inputs = w / "inputs"
    status: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for name, args in commands(w, inputs):
        if name == "predict":  # a few of the set's test captures as loose image files
            inputs.mkdir(exist_ok=True)
            files = sorted((w / "set").rglob("*.png"))[:4] or sorted((w / "set").rglob("*.jpg"))[:4]
            for f in files:
                shutil.copy(f, inputs / f.name)
        t0 = time.perf_counter()
        p = subprocess.run(PY + args, env=env, capture_output=True,
                           text=True)
        seconds[name] = round(time.perf_counter() - t0, 1)
        status[name] = p.returncode
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / f"{name}.out").write_text(p.stdout.replace(str(w), "<OUT>"))
        (out / "logs" / f"{name}.err").write_text(p.stderr.replace(str(w), "<OUT>"))
        print(f"{name:20s} exit {p.returncode}  {seconds[name]:6.1f} s", flush=True)
    files = {str(f.relative_to(w)): digest(f, str(w)) for f in sorted(w.rglob("*")) if compared(f, w)}
    stdout = {f"<stdout>/{name}": digest(out / "logs" / f"{name}.out", str(w)) for name in status
              if name not in ("train-triplet", "train-ce")}
    result = {"code": _code_version(), "work": str(w), "status": status, "seconds": seconds,
              "files": {**files, **stdout}}
    (out / "digests.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    shutil.move(str(w), str(out / "work"))
    return result


def _code_version() -> str:
    import opticsfree

    return str(Path(opticsfree.__file__).parent)


def redigest(out: Path) -> dict[str, Any]:
    """``out/digests.json`` with the file digests computed again from ``out/work`` (the digest
    rules may have changed since the run)."""
    d = json.loads((out / "digests.json").read_text())
    d.setdefault("work", "/tmp/opticsfree-check-outputs")
    w = out / "work"
    files = {str(f.relative_to(w)): digest(f, d["work"]) for f in sorted(w.rglob("*")) if compared(f, w)}
    stdout = {k: digest(out / "logs" / f"{k.split('/', 1)[1]}.out", d["work"]) for k in d["files"]
              if k.startswith("<stdout>/")}
    return {**d, "files": {**files, **stdout}}


def compare(a: Path, b: Path) -> int:
    """Print what differs between two runs (digests computed now); 1 when anything does."""
    da, db = redigest(a), redigest(b)
    bad = 0
    for name in sorted(set(da["status"]) | set(db["status"])):
        if da["status"].get(name) != db["status"].get(name):
            print(f"exit status differs: {name}: {da['status'].get(name)} vs {db['status'].get(name)}")
            bad += 1
    fa, fb = da["files"], db["files"]
    for f in sorted(set(fa) | set(fb)):
        if f not in fa or f not in fb:
            print(f"only in {'the second' if f not in fa else 'the first'}: {f}")
            bad += 1
        elif fa[f] != fb[f]:
            print(f"differs: {f}")
            bad += 1
    same = sum(1 for f in set(fa) & set(fb) if fa[f] == fb[f])
    print(f"{len(da['status'])} commands; {same} files equal, {bad} differences")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="folder for the outputs and digests.json (replaced)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/opticsfree-check-outputs"),
                    help="where the commands run (replaced; the same for both runs)")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two --out folders")
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if not args.out:
        ap.error("--out or --compare is required")
    res = run_all(args.out.resolve(), args.work.resolve())
    failed = [k for k, v in res["status"].items() if v != 0]
    print(f"{len(res['status'])} commands, {len(res['files'])} files; failed: {', '.join(failed) or 'none'}")


if __name__ == "__main__":
    main()
