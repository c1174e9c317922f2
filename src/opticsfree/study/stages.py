"""The stages of a study, their dependency graph, hashing and on-disk markers.

A study is a list of :class:`Stage` objects in dependency order (:func:`plan_study`)::

    data -> captures/lensless (simulate, or an existing set) -> tuples/lensless
         -> reconstruct/M -> captures/M -> tuples/M            (each reconstruction method M)
         -> captures/upper-bound -> tuples/upper-bound          (the clean-image baseline)
         -> train/L/I -> evaluate/L/I -> bayes/L/I              (losses L x images I, baselines)
         -> report

Each stage's output directory is ``OUT/stages/<name>-<key>``, ``key`` being the first 12 hex
digits of the SHA-256 of the stage's kind, the part of the config it depends on (``params``)
and the keys of its upstream stages: changing a training field changes the keys of that
training stage and everything downstream of it, and nothing upstream. A finished stage writes
``DONE.json`` (outputs, wall time) atomically as its last act; a rerun skips stages whose marker
exists and whose output files are present, and re-enters an unfinished one, which resumes
(simulation, training and reconstruction training are resumable; the other stages are cheap).

Every call into the rest of the library is made from this module (``_api_*`` helpers and the
``run_*`` stage functions), so that API changes elsewhere are adapted here only. The names
the report shares with the stages (:class:`Stage`, :class:`StageContext`, ``TEST``,
``UPPER_BOUND``, :func:`run_label`, :func:`jsonable`) live in :mod:`opticsfree.study.base`
(imported here, so ``opticsfree.study.stages.Stage`` still works): the report never imports
this module, and this module imports the report only to run the report stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from opticsfree.utils.threads import single_threaded_openmp
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.study.base import TEST, UPPER_BOUND, Stage, StageContext, jsonable, run_label
from opticsfree.study.config import LENSLESS, StudyConfig
from opticsfree.utils.io import ensure_dir, file_sha256, read_json, write_json

#: Marker of a finished stage.
DONE = "DONE.json"
#: Wall time of unfinished attempts of a stage (failed or interrupted), accumulated.
ATTEMPTS = "ATTEMPTS.json"
#: The last failure of a stage (message and traceback).
FAILED = "FAILED.json"
#: Bump a kind's version when its outputs change meaning: its stages (and downstream) re-run.
STAGE_VERSIONS: dict[str, int] = {"data": 1, "simulate": 1, "external": 1, "tuples": 1,
                                  "recon-train": 1, "recon-apply": 1, "train": 1, "evaluate": 1,
                                  "bayes": 1, "report": 1}


class StageError(OpticsfreeError):
    """A stage failed; the message names the stage, the cause and what was kept."""


# ----------------------------------------------------------------------------------------------
# stages and hashing


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(kind: str, params: dict[str, Any], dep_keys: dict[str, str]) -> str:
    """:math:`\\mathrm{sha256}(\\mathrm{json}(kind, version, params, deps))`, first 12 hex digits."""
    blob = canonical_json({"kind": kind, "version": STAGE_VERSIONS[kind], "params": params,
                           "deps": dep_keys})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def assign_keys(stages: list[Stage]) -> list[Stage]:
    """Set every stage's key (stages must be in dependency order)."""
    keys: dict[str, str] = {}
    for s in stages:
        missing = [d for d in s.deps if d not in keys]
        if missing:
            raise ValueError(f"stage {s.name} depends on {missing}, which come later or not at all")
        s.key = stage_key(s.kind, s.params, {d: keys[d] for d in s.deps})
        keys[s.name] = s.key
    return stages


# ----------------------------------------------------------------------------------------------
# planning


_IDENTITIES: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}


def dataset_identity(dataset: str, data: str | None) -> dict[str, Any]:
    """Which copy of ``dataset`` the study reads: ``{"dataset", "data", "copy", "splits"}``.

    The data stage's key depends on the copy actually found (not on how it was found), so
    pointing ``$OPTICSFREE_DATA`` elsewhere re-runs the study only if another copy is read.
    Loading is cheap after the first time (decoded arrays are cached); the result is also kept
    for the process.

    Raises:
        DataError: the dataset cannot be found (the message says how to point at a copy).
    """
    from opticsfree.data import load_dataset

    token = (dataset, data, None if data else os.environ.get("OPTICSFREE_DATA"))
    if token not in _IDENTITIES:
        ds = load_dataset(dataset, data, splits=("train", TEST))
        _IDENTITIES[token] = {"dataset": ds.name, "data": data, "copy": ds.source,
                              "splits": {k: int(len(v.labels)) for k, v in ds.splits.items()}}
    return dict(_IDENTITIES[token])


def _camera_dict(camera: str) -> dict[str, Any]:
    from opticsfree.optics import load_camera_config

    return load_camera_config(camera).to_dict()


def _train_params(cfg: StudyConfig, loss: str) -> dict[str, Any]:
    """The TrainConfig fields of a run, except the captures path and runtime-only fields."""
    from opticsfree.training.config import RUNTIME_FIELDS

    p = {k: v for k, v in cfg.train.options.items() if k not in RUNTIME_FIELDS}
    p.update(loss=loss, epochs=cfg.train.epochs, checkpoints=cfg.checkpoints(), seed=cfg.study.seed)
    return p


def _file_or_name(value: str) -> dict[str, Any]:
    """A prior name, or a prior file identified by its content hash."""
    if value in ("uniform", "train"):
        return {"name": value}
    return {"file": value, "sha256": file_sha256(value) if Path(value).is_file() else None}


def plan_study(cfg: StudyConfig) -> list[Stage]:
    """The study's stages in dependency order, with their keys.

    A simulated study loads its dataset here (:func:`dataset_identity`), so a missing dataset
    is reported before any stage runs.

    Raises:
        ConfigError: an invalid camera.
        DataError: the dataset cannot be found.
    """
    stages: list[Stage] = []
    seed = cfg.study.seed
    images = cfg.images()

    # ---- captures ----------------------------------------------------------------------------
    if cfg.captures.source == "simulate":
        stages.append(Stage("data", "data", dataset_identity(cfg.data.dataset, cfg.data.data)))
        stages.append(Stage(f"captures/{LENSLESS}", "simulate",
                            {"camera": _camera_dict(cfg.captures.camera), "limit": cfg.data.limit,
                             "frames": cfg.captures.frames, "seed": seed, "splits": ["train", TEST],
                             "quality_size": cfg.captures.quality_size}, ["data"]))
    else:
        root = Path(str(cfg.captures.path))
        ident = {name: (file_sha256(root / name) if (root / name).is_file() else None)
                 for name in ("manifest.json", "index.csv")}
        stages.append(Stage(f"captures/{LENSLESS}", "external",
                            {"path": str(root), **ident, "quality_size": cfg.captures.quality_size}))
    stages.append(Stage(f"tuples/{LENSLESS}", "tuples", {"seed": seed}, [f"captures/{LENSLESS}"]))

    # ---- reconstructions ---------------------------------------------------------------------
    for m in cfg.reconstruct.methods:
        stages.append(Stage(f"reconstruct/{m}", "recon-train",
                            {"method": m, **cfg.reconstruct.settings_for(m), "seed": seed},
                            [f"captures/{LENSLESS}"]))
        stages.append(Stage(f"captures/{m}", "recon-apply",
                            {"method": m, "quality_size": cfg.captures.quality_size},
                            [f"reconstruct/{m}", f"captures/{LENSLESS}"]))
        stages.append(Stage(f"tuples/{m}", "tuples", {"seed": seed}, [f"captures/{m}"]))

    # ---- clean-image upper bound -------------------------------------------------------------
    upper = cfg.upper_bound_losses()
    if upper and cfg.captures.source != "simulate":
        upper = []  # no dataset to re-capture (reported as not run)
    if upper:
        stages.append(Stage(f"captures/{UPPER_BOUND}", "simulate",
                            {"camera": _camera_dict(cfg.baselines.upper_bound_camera),
                             "limit": cfg.data.limit, "frames": 1, "seed": seed,
                             "splits": ["train", TEST], "quality_size": cfg.captures.quality_size},
                            ["data"]))
        stages.append(Stage(f"tuples/{UPPER_BOUND}", "tuples", {"seed": seed},
                            [f"captures/{UPPER_BOUND}"]))

    # ---- training, evaluation, Bayes ---------------------------------------------------------
    runs: list[tuple[str, str, str]] = []  # (loss, images, role)
    for loss in cfg.train.losses:
        for img in images:
            runs.append((loss, img, "main"))
    if cfg.baselines.ce and "ce" not in cfg.train.losses:
        runs.append(("ce", LENSLESS, "baseline"))
    for loss in upper:
        runs.append((loss, UPPER_BOUND, "upper-bound"))
    for loss, img, role in runs:
        label = run_label(loss, img)
        stages.append(Stage(f"train/{label}", "train",
                            {**_train_params(cfg, loss), "images": img, "role": role},
                            [f"captures/{img}", f"tuples/{img}"]))
        classifiers = ["head"] if loss == "ce" else list(cfg.evaluate.classifiers)
        stages.append(Stage(f"evaluate/{label}", "evaluate",
                            {"classifiers": classifiers, "split": cfg.evaluate.split,
                             "bootstrap": cfg.evaluate.bootstrap, "seed": seed},
                            [f"train/{label}"]))
        if cfg.bayes.enabled and role == "main":
            stages.append(Stage(f"bayes/{label}", "bayes",
                                {"prior": _file_or_name(cfg.bayes.prior),
                                 "checkpoint": cfg.bayes.checkpoint, "frames": cfg.bayes.frames,
                                 "split": cfg.evaluate.split},
                                [f"train/{label}"]))

    # ---- report ------------------------------------------------------------------------------
    stages.append(Stage("report", "report",
                        {"report": cfg.report.model_dump(mode="json"), "title": cfg.title(),
                         "config": cfg.to_dict()},
                        [s.name for s in stages]))
    return assign_keys(stages)


# ----------------------------------------------------------------------------------------------
# markers


def read_done(directory: Path) -> dict[str, Any] | None:
    """The DONE.json of a finished stage whose output files still exist, else None.

    ``files`` in the marker are relative to the study directory (``directory/../..``).
    """
    path = directory / DONE
    if not path.is_file():
        return None
    try:
        done = read_json(path)
    except OpticsfreeError:
        return None
    if not isinstance(done, dict):
        return None
    out = directory.parent.parent
    for f in done.get("files", []):
        if not (out / f).exists():
            return None
    return done


def _attempts(directory: Path) -> list[dict[str, Any]]:
    p = directory / ATTEMPTS
    if not p.is_file():
        return []
    try:
        data = read_json(p)
    except OpticsfreeError:
        return []
    return data if isinstance(data, list) else []


def _files_in(outputs: Any, out: Path) -> list[str]:
    """Paths inside the study directory named in ``outputs`` (relative to it; checked on rerun)."""
    found: list[str] = []
    base = str(out.resolve())

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, str) and os.path.isabs(x):
            p = os.path.abspath(x)
            if p.startswith(base + os.sep) and os.path.exists(p):
                found.append(os.path.relpath(p, base))

    walk(outputs)
    return sorted(set(found))


def execute_stage(stage: Stage, ctx: StageContext) -> tuple[dict[str, Any], str]:
    """Run ``stage`` unless it is finished; returns (DONE record, ``ran`` or ``skipped``).

    Raises:
        StageError: the stage failed (the message names it; its partial output and a
            FAILED.json stay for inspection, finished stages are untouched).
    """
    directory = stage.directory(ctx.out)
    done = read_done(directory)
    if done is not None:
        return done, "skipped"
    ensure_dir(directory)
    resumed = any(p.name not in (ATTEMPTS, FAILED) for p in directory.iterdir())
    fn = STAGE_FUNCTIONS[stage.kind]
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    ok = False
    try:
        outputs = fn(stage, directory, ctx)
        ok = True
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every failure stops the study with a clear message
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, OpticsfreeError):
            msg = f"{type(e).__name__}: {msg}"
        write_json(directory / FAILED, {"stage": stage.name, "error": msg, "type": type(e).__name__,
                                        "traceback": traceback.format_exc()})
        raise StageError(f"stage {stage.name} failed: {msg} (details: {directory / FAILED}; "
                         f"finished stages are kept, rerun the same command to resume)") from e
    finally:
        if not ok:
            attempts = _attempts(directory) + [{"started": started,
                                                "wall_s": time.perf_counter() - t0}]
            with contextlib.suppress(OpticsfreeError):
                write_json(directory / ATTEMPTS, attempts)
    wall = time.perf_counter() - t0
    earlier = sum(float(a.get("wall_s", 0.0)) for a in _attempts(directory))
    record = {"stage": stage.name, "kind": stage.kind, "key": stage.key, "params": stage.params,
              "deps": {d: ctx.stages[d].key for d in stage.deps}, "outputs": outputs,
              "files": _files_in(outputs, ctx.out), "wall_s": wall,
              "wall_s_total": wall + earlier, "resumed": resumed, "started": started,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(FileNotFoundError):
        (directory / FAILED).unlink()
    write_json(directory / DONE, record)
    return record, "ran"


# ----------------------------------------------------------------------------------------------
# helpers for calls into the library


def call_with_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments its signature accepts (others are dropped)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in sig.parameters})


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


def _reconstruction_api() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``train_reconstruction`` and ``apply_reconstruction`` of opticsfree.reconstruction."""
    try:
        import opticsfree.reconstruction as rec
    except ImportError as e:
        raise ConfigError(f"[reconstruct] methods: opticsfree.reconstruction cannot be imported "
                          f"in this build ({e}); remove the methods from the config") from None
    fns = [getattr(rec, n, None) for n in ("train_reconstruction", "apply_reconstruction")]
    if not all(callable(f) for f in fns):
        raise ConfigError("[reconstruct] methods: opticsfree.reconstruction has no "
                          "train_reconstruction/apply_reconstruction in this build; remove the "
                          "methods from the config")
    return fns[0], fns[1]


def run_recon_train(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Train a reconstruction model on the lensless set (resumes an interrupted run)."""
    train_reconstruction, _ = _reconstruction_api()
    p = stage.params
    captures = ctx.outputs[stage.deps[0]]["captures"]
    model = d / "model"
    resume = (model / "config.json").is_file()

    def on_epoch(row: dict[str, Any]) -> None:
        q = " ".join(f"{k} {row[k]:.3g}" for k in ("val_psnr", "val_ssim", "seconds")
                     if isinstance(row.get(k), (int, float)))
        ctx.log(f"  {stage.name}: epoch {row.get('epoch')} {q}".rstrip())

    call_with_supported(train_reconstruction, captures, p["method"], model, epochs=p["epochs"],
                        device=ctx.device, resume=resume, seed=p["seed"], size=p["size"],
                        limit=p["limit"], val_fraction=p["val_fraction"],
                        batch_size=p["batch_size"], options=p["options"] or None, on_epoch=on_epoch)
    metrics = []
    with contextlib.suppress(Exception):
        from opticsfree.reconstruction import list_metrics

        metrics = list_metrics(model)
    return {"model": str(model), "method": p["method"], "config": str(model / "config.json"),
            "metrics": jsonable(metrics)}


def run_recon_apply(stage: Stage, d: Path, ctx: StageContext) -> dict[str, Any]:
    """Reconstruct every capture into a derived capture set (resumable), check it, measure it."""
    _, apply_reconstruction = _reconstruction_api()
    model = ctx.outputs[stage.deps[0]]["model"]
    captures = ctx.outputs[stage.deps[1]]["captures"]
    root = d / "captures"

    def on_progress(split: str, done: int, total: int) -> None:
        if done == total:
            ctx.log(f"  {stage.name}: {split} {done}/{total} reconstructed")

    call_with_supported(apply_reconstruction, model, captures, root, device=ctx.device,
                        on_progress=on_progress)
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
    # the primary classifier last, so that table.md/csv hold its numbers
    with single_threaded_openmp():
        for clf in classifiers[1:] + [primary]:
            evaluation = evaluate_models(models, d, p["split"], clf, run=run,
                                         metrics=run / "metrics.jsonl", figures=clf == primary,
                                         seed=p["seed"], n_resamples=p["bootstrap"])
            summaries = [c.to_json(detail=False) for c in evaluation.checkpoints]
            results[clf] = [dict(s, seed_row=s["seed"]) for s in summaries]
    figures = sorted(str(f) for f in (d / "figures").glob("*.png")) if (d / "figures").is_dir() else []
    return {"run": train_out["run"], "loss": train_out["loss"], "images": train_out["images"],
            "role": train_out["role"], "primary": primary, "results": results,
            "eval_files": [str(d / f"eval_{p['split']}_{c}.json") for c in classifiers],
            "table_md": str(d / "table.md"), "figures": figures}


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


STAGE_FUNCTIONS: dict[str, Callable[[Stage, Path, StageContext], dict[str, Any]]] = {
    "data": run_data, "simulate": run_simulate, "external": run_external, "tuples": run_tuples,
    "recon-train": run_recon_train, "recon-apply": run_recon_apply, "train": run_train,
    "evaluate": run_evaluate, "bayes": run_bayes, "report": run_report,
}
