"""Which stages a study config has: :func:`plan_study`.

A study is a list of :class:`~opticsfree.study.base.Stage` objects in dependency order::

    data -> captures/lensless (simulate, or an existing set) -> tuples/lensless
         -> reconstruct/M -> captures/M -> tuples/M            (each reconstruction method M)
         -> captures/upper-bound -> tuples/upper-bound          (the clean-image baseline)
         -> train/L/I -> evaluate/L/I -> bayes/L/I              (losses L x images I, baselines)
         -> report

Each stage's ``params`` are the part of the config it depends on; the keys are set by
:func:`opticsfree.study.engine.assign_keys` from them, the kind's version (its entry in the
stage registry, :mod:`opticsfree.study.names`) and the upstream keys. What each kind does is in
:mod:`opticsfree.study.stages`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from opticsfree.losses.names import classified_by_head
from opticsfree.study.base import TEST, UPPER_BOUND, Stage, run_label
from opticsfree.study.config import LENSLESS, StudyConfig
from opticsfree.study.engine import assign_keys
from opticsfree.study.names import stage_versions
from opticsfree.utils.io import file_sha256

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


def _recipe_params(cfg: StudyConfig) -> dict[str, Any]:
    """The TrainConfig fields of the ``[baselines] recipe`` run: the recipe's settings for its
    default loss, the study's epochs, checkpoints and seed (the same budget as the main runs);
    scene augmentation only where the captures are simulated."""
    from opticsfree.training.recipes import load_recipe

    recipe = load_recipe(str(cfg.baselines.recipe))
    loss, fields, _ = recipe.fields(simulated=cfg.captures.source == "simulate")
    return {**fields, "loss": loss, "epochs": cfg.train.epochs, "checkpoints": cfg.checkpoints(),
            "seed": cfg.study.seed, "recipe": recipe.name}


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
    if cfg.baselines.recipe:
        recipe = _recipe_params(cfg)
        runs.append((recipe["loss"], LENSLESS, "recipe"))
    for loss, img, role in runs:
        if role == "recipe":
            label = run_label(f"recipe-{recipe['recipe']}-{loss}", img)
            params = {k: v for k, v in recipe.items() if k != "recipe"}
        else:
            label, params = run_label(loss, img), _train_params(cfg, loss)
        stages.append(Stage(f"train/{label}", "train", {**params, "images": img, "role": role},
                            [f"captures/{img}", f"tuples/{img}"]))
        classifiers = ["head"] if classified_by_head(loss) else list(cfg.evaluate.classifiers)
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
    return assign_keys(stages, stage_versions())
