"""What each kind of study stage does: the stage functions ``(stage, directory, ctx) -> outputs``.

The stage registry (:mod:`opticsfree.study.names`) names each kind's function here, with its
version; :func:`opticsfree.study.engine.run_stages` calls them in the planned order
(:func:`opticsfree.study.plan.plan_study`). A stage function reads its parameters from
``stage.params`` and its inputs from the outputs of its upstream stages (``ctx.outputs``),
writes into its own directory and returns its outputs (JSON-ready; kept in ``DONE.json``).

Every call into the rest of the library is made from this module and with the library's own
signatures: an error in a stage propagates, and the engine stops the study with a
:class:`~opticsfree.study.engine.StageError` naming the stage (and ``FAILED.json`` holding the
traceback). This module imports the report only to run the report stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opticsfree.errors import DataError
from opticsfree.study.base import TEST, Stage, StageContext, jsonable
from opticsfree.utils.io import file_sha256, write_json
from opticsfree.utils.threads import single_threaded_openmp


# ----------------------------------------------------------------------------------------------
# helpers for calls into the library


def _show_progress() -> bool:
    import sys

    return sys.stderr.isatty()


def _capture_summary(root: Path) -> dict[str, Any]:
    from opticsfree.captures.format import open_capture_set

    cs = open_capture_set(root)
    m = cs.manifest
    cam = m.get("camera") or {}
    return {"captures": str(root), "classes": cs.classes, "splits": m.get("splits"),
            "frames": cs.frames, "channels": m.get("channels"), "source": m.get("source"),
            "camera": cam, "camera_name": cam.get("name") or cam.get("type"),
            "derived": cs.is_derived, "reconstruction": m.get("reconstruction"),
            "seed": m.get("seed")}


def _quality(root: Path, size: int) -> dict[str, Any]:
    from opticsfree.captures.quality import CONVENTION, capture_quality

    q = capture_quality(root, TEST, size)
    q["convention"] = CONVENTION.format(size=size)
    return q


def _check(root: Path, decode: bool) -> dict[str, Any]:
    from opticsfree.captures.check import check_capture_set

    rep = check_capture_set(root, decode=decode)
    res = rep.to_json()
    if not rep.ok:
        first = "; ".join(f"{p['file']}: {p['problem']}" for p in rep.problems[:3])
        raise DataError(f"{root}: capture set check found {len(rep.problems)} problem(s): {first}"
                        f"{' ...' if len(rep.problems) > 3 else ''} (run `opticsfree check {root}`)")
    return {"ok": res["ok"], "n_rows": res["n_rows"], "splits": res["splits"], "sizes": res["sizes"]}


# ----------------------------------------------------------------------------------------------
# stage functions: (stage, directory, ctx) -> outputs (JSON-ready)


def run_data(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Load the dataset (finding or downloading the copy) and record where it came from."""
    from opticsfree.data import load_dataset

    p = stage.params
    ds = load_dataset(p["dataset"], p["data"], splits=("train", TEST))
    info = {"dataset": ds.name, "source": ds.source, "classes": list(ds.classes),
            "splits": {k: int(len(v.labels)) for k, v in ds.splits.items()},
            "image_shape": list(ds.splits["train"].images.shape[1:]), "notes": list(ds.notes)}
    write_json(d / "dataset.json", info)
    return {**info, "file": str(d / "dataset.json")}


def run_simulate(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Simulate a capture set (resumable), check it and measure its degradation."""
    from opticsfree.captures.simulate import simulate_capture_set
    from opticsfree.data import load_dataset
    from opticsfree.optics import camera_from_dict

    p = stage.params
    data = ctx.outputs["data"]
    ds = load_dataset(data["dataset"], ctx.cfg.data.data, splits=tuple(p["splits"]))
    camera = camera_from_dict(p["camera"])
    root = d / "captures"
    last = [0.0]

    def on_progress(split: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] > 30:
            last[0] = now
            ctx.log(f"  {stage.name}: {split} {done}/{total} scenes")

    simulate_capture_set(ds, camera, root, splits=p["splits"], limit=p["limit"], frames=p["frames"],
                         seed=p["seed"], on_progress=on_progress)
    check = _check(root, decode=False)
    quality = _quality(root, p["quality_size"])
    return {**_capture_summary(root), "check": check, "quality": quality}


def run_external(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Use an existing capture set (simulated or real): check it and measure its degradation."""
    root = Path(stage.params["path"])
    if not (root / "manifest.json").is_file():
        raise DataError(f"{root}: not a capture set (no manifest.json); make one with "
                        f"`opticsfree simulate` or `opticsfree import`")
    check = _check(root, decode=True)
    quality = _quality(root, stage.params["quality_size"])
    return {**_capture_summary(root), "check": check, "quality": quality}


def run_tuples(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Write the seed's ``tuples_train.csv`` into the capture set.

    An existing capture set that already has one (e.g. real captures with the lab's own rows)
    keeps it.
    """
    from opticsfree.captures.tuples import make_tuples, tuples_path

    captures = Path(ctx.outputs[stage.deps[0]]["captures"])
    path = tuples_path(captures, "train")
    kind = ctx.stages[stage.deps[0]].kind
    kept = kind == "external" and path.is_file()
    if not kept:
        path = make_tuples(captures, "train", stage.params["seed"])
    with open(path, encoding="utf-8") as f:
        rows = sum(1 for _ in f) - 1
    return {"tuples": str(path), "sha256": file_sha256(path), "rows": rows, "kept_existing": kept}


def run_recon_train(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Train a reconstruction model on the lensless set (resumes an interrupted run)."""
    from opticsfree.reconstruction import list_metrics, train_reconstruction

    p = stage.params
    captures = ctx.outputs[stage.deps[0]]["captures"]
    model = d / "model"
    resume = (model / "config.json").is_file()

    def on_epoch(row: dict[str, Any]) -> None:
        q = " ".join(f"{k} {row[k]:.3g}" for k in ("val_psnr", "val_ssim", "seconds")
                     if isinstance(row.get(k), (int, float)))
        ctx.log(f"  {stage.name}: epoch {row.get('epoch')} {q}".rstrip())

    train_reconstruction(captures, p["method"], model, epochs=p["epochs"], device=ctx.device,
                         resume=resume, seed=p["seed"], size=p["size"], limit=p["limit"],
                         val_fraction=p["val_fraction"], batch_size=p["batch_size"],
                         options=p["options"] or None, on_epoch=on_epoch)
    metrics = list_metrics(model)
    return {"model": str(model), "method": p["method"], "config": str(model / "config.json"),
            "metrics": jsonable(metrics)}


def run_recon_apply(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Reconstruct every capture into a derived capture set (resumable), check it, measure it."""
    from opticsfree.reconstruction import apply_reconstruction

    model = ctx.outputs[stage.deps[0]]["model"]
    captures = ctx.outputs[stage.deps[1]]["captures"]
    root = d / "captures"

    def on_progress(split: str, done: int, total: int) -> None:
        if done == total:
            ctx.log(f"  {stage.name}: {split} {done}/{total} reconstructed")

    apply_reconstruction(model, captures, root, device=ctx.device, on_progress=on_progress)
    check = _check(root, decode=False)
    quality = _quality(root, stage.params["quality_size"])
    return {**_capture_summary(root), "method": stage.params["method"], "check": check,
            "quality": quality}


def run_train(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Train one metric-learning (or cross-entropy) run; resumes an interrupted one."""
    from opticsfree.training import train

    p = dict(stage.params)
    images, role = p.pop("images"), p.pop("role")
    captures = ctx.outputs[stage.deps[0]]["captures"]
    run = d / "run"
    config = {**p, **{k: v for k, v in ctx.cfg.train.options.items() if k not in p},
              "captures": captures, "device": ctx.device}
    resume = (run / "config.json").is_file()
    summary = train(config, run, resume=resume, show_progress=_show_progress())
    return {"run": str(run), "loss": p["loss"], "images": images, "role": role,
            "summary": jsonable(summary), "config": str(run / "config.json"),
            "metrics": str(run / "metrics.jsonl")}


def run_evaluate(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Evaluate every checkpoint with each classifier (figures with the first one); the
    outputs go to the stage's directory."""
    from opticsfree.evaluation.report import evaluate_models
    from opticsfree.training import list_checkpoints, load_trained

    train_out = ctx.outputs[stage.deps[0]]
    run = Path(train_out["run"])
    p = stage.params
    classifiers = list(p["classifiers"])
    primary = classifiers[0]
    models = [load_trained(run, epoch) for epoch in list_checkpoints(run)]
    results: dict[str, list[dict[str, Any]]] = {}
    # every classifier writes its own tables (table.md/csv: the run's default classifier,
    # table_<classifier>.*: another); table_md names the primary classifier's
    table_md = d / "table.md"
    with single_threaded_openmp():
        for clf in classifiers[1:] + [primary]:
            evaluation = evaluate_models(models, d, p["split"], clf, run=run,
                                         metrics=run / "metrics.jsonl", figures=clf == primary,
                                         seed=p["seed"], n_resamples=p["bootstrap"])
            summaries = [c.to_json(detail=False) for c in evaluation.checkpoints]
            results[clf] = [dict(s, seed_row=s["seed"]) for s in summaries]
            if clf == primary:
                table_md = evaluation.table_paths[0]
    figures = sorted(str(f) for f in (d / "figures").glob("*.png")) if (d / "figures").is_dir() else []
    return {"run": train_out["run"], "loss": train_out["loss"], "images": train_out["images"],
            "role": train_out["role"], "primary": primary, "results": results,
            "eval_files": [str(d / f"eval_{p['split']}_{c}.json") for c in classifiers],
            "table_md": str(table_md), "figures": figures}


def run_bayes(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """The Bayesian analysis of one run (priors, posteriors, KL, calibration, frames); the
    outputs go to the stage's directory."""
    from opticsfree.bayes.report import bayes_analysis
    from opticsfree.training import load_trained

    train_out = ctx.outputs[stage.deps[0]]
    run = Path(train_out["run"])
    p = stage.params
    prior = p["prior"].get("file") or p["prior"]["name"]
    model = load_trained(run, p["checkpoint"])
    with single_threaded_openmp():
        res = bayes_analysis(model, d, prior=prior, frames=p["frames"], split=p["split"],
                             run=run).to_json()
    keep = ("kl_posterior_prior", "kl_label_meanposterior", "kl_prior_posterior", "accuracy",
            "nll", "brier", "ece", "temperature", "before_temperature", "temperature_fit",
            "frames", "mean_frame", "n", "n_scenes", "frames_per_scene", "prior", "likelihood",
            "epoch", "split", "conventions")
    figures = sorted(str(f) for f in (d / "figures").glob("bayes_*.png")) if (d / "figures").is_dir() else []
    return {"run": train_out["run"], "loss": train_out["loss"], "images": train_out["images"],
            **{k: res.get(k) for k in keep}, "file": str(d / f"bayes_{p['split']}.json"),
            "figures": figures}


def run_report(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Write OUT/report.html, OUT/report.md and OUT/results.json."""
    from opticsfree.study.report import write_report

    return write_report(ctx, d)

