"""Evaluate every checkpoint of a metric-learning run and write its tables and figures.

For each checkpoint (ascending epoch) the lensless captures of ``split`` are embedded and
classified by one classifier:

- ``prototype`` (default): nearest class centroid of the original-image TRAIN embeddings
  (L2-normalised class means, one original per scene).
- ``knn``: majority vote of the k nearest train originals (exact L2 search); k is chosen
  on the run's ``val`` split from 1, 3, 5, 10, 20 (highest val accuracy, ties to the smaller k).
- ``threshold``: the seed's distance threshold (see
  :mod:`opticsfree.evaluation.threshold_classifier`): t maximises the balanced verification
  accuracy of the val (lensless, class prototype) pairs; reported: closed-set accuracy (nearest
  prototype), verification accuracy and EER on the split's pairs, and the reject option
  ("unknown" when the nearest prototype is farther than t).
- ``head``: argmax of the classifier head's logits (only models trained with one).

The test split is used only for the final numbers. Outputs, under the run directory:

- ``eval_<split>_<classifier>.json``: everything (per checkpoint: metrics, per-class report,
  confusion matrix, classifier parameters, the matching seed row).
- ``table.md`` and ``table.csv`` (for the test split; ``table_<split>.*`` otherwise): the seed's
  layout (Accuracy, Precision, Recall, F1score, Epochs), with the seed's published row beside
  ours where the run matches one of the seed's tables (a row label column comes first).
- ``figures/*.png`` for the last checkpoint: distance histograms with the threshold, confusion
  matrix, t-SNE map, learning curves.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.evaluation import figures as figs
from opticsfree.evaluation.embed import Embedded, class_prototypes, embed_split
from opticsfree.evaluation.knn_classifier import DEFAULT_KS, KNNClassifier
from opticsfree.evaluation.metrics import (bootstrap_accuracy_ci, classification_metrics,
                                           retrieval_metrics)
from opticsfree.evaluation.prototype_classifier import pairwise_distances
from opticsfree.evaluation.seed_tables import capture_set_facts, match_run
from opticsfree.evaluation.threshold_classifier import (UNKNOWN, ThresholdClassifier,
                                                        pair_distances)
from opticsfree.utils.io import write_json, write_text

#: The distance classifiers (every model but a :data:`HEAD_ONLY_LOSSES` one).
CLASSIFIERS = ("prototype", "knn", "threshold")
#: Plus the classifier head of models trained with one.
ALL_CLASSIFIERS = CLASSIFIERS + ("head",)
#: losses that train only the lensless tower and its head: ``head`` is their only classifier
HEAD_ONLY_LOSSES = ("ce",)
#: Keys left out of the per-checkpoint summary printed by ``--json`` (they are in the file).
DETAIL_KEYS = ("per_class", "confusion_matrix", "classes")


def default_classifier(loss: str | None) -> str:
    """The classifier to use when none is named: ``head`` for :data:`HEAD_ONLY_LOSSES`,
    ``prototype`` otherwise."""
    return "head" if loss in HEAD_ONLY_LOSSES else "prototype"


CONVENTIONS = {
    "units": "percent (0-100)",
    "precision_recall_f1": "support-weighted averages over classes, as in the seed's tables "
                           "(weighted recall equals accuracy); macro_* are unweighted means",
    "zero_division": "a class never predicted has precision 0",
    "accuracy_ci": "percentile bootstrap 95% interval, 1000 resamples of the split's rows, seeded",
    "retrieval": "PML AccuracyCalculator; queries = lensless embeddings of the split, references "
                 "= originals of the same split (one per scene); precision_at_1 and MAP@R",
    "prototype": "nearest class centroid (L2-normalised mean) of the train original embeddings",
    "knn": "majority vote of the k nearest train originals (exact L2 search, torch.cdist + topk); "
           "ties to the class "
           "of the nearest tied neighbour; k chosen on val from 1,3,5,10,20 by accuracy, ties to "
           "the smaller k",
    "threshold": "pairs (lensless, class prototype), matching when the classes agree; accept when "
                 "d <= t; t maximises the balanced verification accuracy (TAR + 1 - FAR) / 2 on "
                 "the val pairs (smallest t among ties); accuracy/precision/recall/f1 are "
                 "closed-set (nearest prototype); reject option: 'unknown' when the nearest "
                 "prototype is farther than t; EER where FAR = FRR (linear interpolation)",
    "head": "argmax of the classifier head's logits on the lensless captures",
}


# Hooks onto the training package (looked up at call time, so tests can replace them).
def _training() -> Any:
    try:
        from opticsfree import training
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("opticsfree.training"):
            raise OpticsfreeError("opticsfree.training is not installed in this build; "
                                  "cannot load checkpoints") from None
        raise
    return training


def list_checkpoints(run: str | Path) -> list[int]:
    """Epochs with a checkpoint in ``run`` (:func:`opticsfree.training.list_checkpoints`)."""
    return _training().list_checkpoints(run)


def load_trained(run: str | Path, epoch: int | None = None) -> Any:
    """A checkpoint as a TrainedModel (:func:`opticsfree.training.load_trained`)."""
    return _training().load_trained(run, epoch)


@dataclass
class _Artifacts:
    """What the figures of one checkpoint need (not written to JSON)."""

    test: Embedded
    prototypes: np.ndarray
    threshold: float | None = None


def _load_split(trained: Any, split: str, why: str) -> Any:
    try:
        return trained.load_split(split)
    except OpticsfreeError as e:
        raise type(e)(f"{why}: {e}") from None


def evaluate_checkpoint(trained: Any, split: str = "test", classifier: str = "prototype", *,
                        seed: int = 0, n_resamples: int = 1000, batch_size: int = 256,
                        _want_figures: bool = False) -> dict[str, Any]:
    """Evaluate one trained model on one split with one classifier.

    Args:
        trained: a :class:`opticsfree.training.TrainedModel`.
        split: the split to score (``"test"``; ``"val"`` for model selection).
        classifier: one of :data:`ALL_CLASSIFIERS`.
        seed: bootstrap seed.
        n_resamples: bootstrap resamples.
        batch_size: images per forward pass.

    Returns:
        A dict with ``epoch, classifier, split, n, accuracy, precision, recall, f1,
        accuracy_ci, macro_precision, macro_recall, macro_f1, precision_at_1, map_at_r,
        per_class, confusion_matrix, classes`` (percent), plus classifier parameters (``k``,
        ``val_accuracy_by_k``; ``threshold``, ``verification_accuracy``, ``eer``, ...).

    Raises:
        ConfigError: unknown classifier, ``head`` for a model without a head, or a distance
            classifier for a model trained with a :data:`HEAD_ONLY_LOSSES` loss.
    """
    if classifier not in ALL_CLASSIFIERS:
        raise ConfigError(f"--classifier: unknown {classifier!r}; expected one of "
                          f"{', '.join(ALL_CLASSIFIERS)}")
    if classifier == "head" and not getattr(trained, "has_head", False):
        raise ConfigError(f"--classifier head: the model (loss {trained.config.get('loss')!r}) "
                          f"has no classifier head; use one of {', '.join(CLASSIFIERS)}")
    if classifier != "head" and trained.config.get("loss") in HEAD_ONLY_LOSSES:
        raise ConfigError(f"--classifier {classifier}: the model was trained with loss "
                          f"{trained.config.get('loss')!r}, which never trains the original "
                          "tower, so distances to the originals mean nothing; use --classifier head")
    classes = list(trained.classes)
    n_classes = len(classes)
    data = trained.load_split(split)
    test = embed_split(trained, data, batch_size=batch_size)
    train = embed_split(trained, "train", domains=("original",), batch_size=batch_size)
    gallery, gallery_labels = train.unique_originals()
    prototypes = class_prototypes(gallery, gallery_labels, n_classes)

    out: dict[str, Any] = {"epoch": int(trained.epoch), "classifier": classifier, "split": split}
    extra: dict[str, Any] = {}
    threshold = None
    need_val = classifier in ("knn", "threshold") or _want_figures
    val = None
    if need_val:
        try:
            val_data = _load_split(trained, "val", f"--classifier {classifier} tunes on the "
                                   "run's val split")
            val = embed_split(trained, val_data, domains=("lensless",), batch_size=batch_size)
        except OpticsfreeError:
            if classifier in ("knn", "threshold"):
                raise
            val = None  # figures only: draw the histogram without a threshold

    if classifier == "prototype":
        pred = pairwise_distances(test.lensless, prototypes).argmin(axis=1)
    elif classifier == "knn":
        knn = KNNClassifier(n_classes=n_classes).fit(gallery, gallery_labels)
        by_k = knn.select_k(val.lensless, val.labels, DEFAULT_KS)
        pred = knn.predict(test.lensless)
        extra["k"] = knn.k
        extra["val_accuracy_by_k"] = {str(k): 100.0 * a for k, a in by_k.items()}
        extra["gallery_size"] = knn.gallery_size
    elif classifier == "threshold":
        thr = ThresholdClassifier(prototypes).fit(val.lensless, val.labels)
        pred, open_pred, _ = thr.predict(test.lensless)
        ver = thr.verify(test.lensless, test.labels)
        accepted = open_pred != UNKNOWN
        threshold = thr.threshold
        extra.update({
            "threshold": float(thr.threshold),
            "val_verification_accuracy": 100.0 * thr.fit_accuracy,
            "val_eer": 100.0 * thr.fit_eer,
            "verification_accuracy": 100.0 * ver["verification_accuracy"],
            "tar": 100.0 * ver["tar"],
            "far": 100.0 * ver["far"],
            "eer": 100.0 * ver["eer"],
            "eer_threshold": ver["eer_threshold"],
            "reject_rate": 100.0 * float(1.0 - accepted.mean()),
            "accepted_accuracy": (100.0 * float((open_pred[accepted] == test.labels[accepted]).mean())
                                  if accepted.any() else None),
            "accuracy_with_reject": 100.0 * float((open_pred == test.labels).mean()),
        })
    else:  # head
        pred = _head_predict(trained, data, batch_size)

    if threshold is None and val is not None and n_classes >= 2:
        threshold = ThresholdClassifier(prototypes).fit(val.lensless, val.labels).threshold

    m = classification_metrics(test.labels, pred, n_classes, classes)
    out.update({k: m[k] for k in ("n", "accuracy", "precision", "recall", "f1")})
    out["accuracy_ci"] = list(bootstrap_accuracy_ci(test.labels, pred, n_resamples, seed=seed))
    out.update({k: m[k] for k in ("macro_precision", "macro_recall", "macro_f1")})
    ref, ref_labels = test.unique_originals()
    out.update(retrieval_metrics(test.lensless, test.labels, ref, ref_labels))
    out.update(extra)
    out["per_class"] = m["per_class"]
    out["confusion_matrix"] = m["confusion_matrix"]
    out["classes"] = classes
    if _want_figures:
        out["_artifacts"] = _Artifacts(test=test, prototypes=prototypes, threshold=threshold)
    return out


def _head_predict(trained: Any, data: Any, batch_size: int) -> np.ndarray:
    import torch

    preds = []
    with torch.inference_mode():
        for s in range(0, int(data.lensless.shape[0]), batch_size):
            logits = trained.logits(data.lensless[s:s + batch_size])
            if logits is None:
                raise ConfigError("--classifier head: the model returned no logits")
            preds.append(torch.as_tensor(logits).argmax(dim=1).cpu().numpy())
    return np.concatenate(preds).astype(np.int64)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` object of one checkpoint: ``result`` without the bulky detail keys."""
    return {k: v for k, v in result.items() if k not in DETAIL_KEYS and not k.startswith("_")}


def _check_run(run: Path) -> list[int]:
    if not run.exists():
        raise DataError(f"{run}: run directory not found")
    if not run.is_dir():
        raise DataError(f"{run}: not a run directory")
    epochs = sorted(int(e) for e in list_checkpoints(run))
    if not epochs:
        raise DataError(f"{run}: no checkpoints (expected {run / 'checkpoints'}/epoch_NNN.pt)")
    return epochs


def table_paths(run: str | Path, split: str) -> tuple[Path, Path]:
    """``(table.md, table.csv)`` for the test split, ``table_<split>.*`` otherwise."""
    stem = "table" if split == "test" else f"table_{split}"
    return Path(run) / f"{stem}.md", Path(run) / f"{stem}.csv"


TABLE_COLUMNS = ["Model", "Accuracy", "Precision", "Recall", "F1score", "Epochs"]


def table_rows(results: list[dict[str, Any]], label: str) -> list[list[Any]]:
    """Rows in the seed's layout: ours per checkpoint, then the seed's row of that epoch."""
    rows: list[list[Any]] = []
    for r in results:
        rows.append([label, r["accuracy"], r["precision"], r["recall"], r["f1"], r["epoch"]])
        s = r.get("seed")
        if s:
            rows.append([f"seed Table {s['table']} ({s['loss']}, {s['images']})", s["accuracy"],
                         s["precision"], s["recall"], s["f1"], s["epochs"]])
    return rows


def write_tables(run: str | Path, results: list[dict[str, Any]], split: str, classifier: str,
                 config: dict[str, Any], images: str = "lensless") -> tuple[Path, Path]:
    """Write ``table.md`` and ``table.csv`` (seed layout) for evaluated checkpoints.

    Args:
        run: the run directory.
        results: per-checkpoint dicts from :func:`evaluate_checkpoint` (with ``seed`` set to the
            matching seed row dict or None).
        split: the evaluated split.
        classifier: the classifier used.
        config: the run's config (for the row label).
        images: ``"lensless"`` or ``"reconstructed"`` (for the row label).

    Returns:
        The two paths.
    """
    run = Path(run)
    md_path, csv_path = table_paths(run, split)
    label = f"ours ({config.get('loss', '?')}, {images}, {classifier})"
    rows = table_rows(results, label)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TABLE_COLUMNS)
    for row in rows:
        w.writerow([row[0]] + [f"{v:.2f}" for v in row[1:5]] + [int(row[5])])
    write_text(csv_path, buf.getvalue())

    lines = [
        f"# {run.name}: {classifier} classifier, {split} split",
        "",
        f"Percent. Precision, recall and F1 are support-weighted averages over classes (as in "
        f"the seed's tables, where recall equals accuracy). Classifier: {CONVENTIONS[classifier]}."
        + (" Seed rows: the seed study's published CIFAR-10 test numbers for the same loss, "
           "images and epochs." if any(r.get("seed") for r in results) else ""),
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append("| " + " | ".join([row[0]] + [f"{v:.2f}" for v in row[1:5]]
                                       + [str(int(row[5]))]) + " |")
    write_text(md_path, "\n".join(lines) + "\n")
    return md_path, csv_path


def write_figures(run: Path, result: dict[str, Any], metrics_jsonl: Path | None = None,
                  seed: int = 0) -> list[Path]:
    """Write the figures of one evaluated checkpoint under ``run/figures``.

    ``result`` must come from :func:`evaluate_checkpoint` with figures requested (it carries the
    embeddings). Returns the written paths.
    """
    art: _Artifacts = result["_artifacts"]
    split, clf, epoch = result["split"], result["classifier"], result["epoch"]
    classes = result["classes"]
    out_dir = run / "figures"
    paths: list[Path] = []
    test = art.test
    if len(classes) >= 2:
        m, n = pair_distances(test.lensless, test.labels, art.prototypes)
        note = ""
        if art.threshold is not None:
            from opticsfree.evaluation.threshold_classifier import (equal_error_rate,
                                                                    verification_accuracy)
            note = (f"verification acc. {100 * verification_accuracy(m, n, art.threshold):.1f}%, "
                    f"EER {100 * equal_error_rate(m, n)[0]:.1f}%")
        paths.append(figs.plot_distance_histogram(
            m, n, art.threshold, out_dir / f"threshold_{split}.png",
            title=f"Threshold for lensless images ({split}, epoch {epoch}; t chosen on val)",
            note=note))
    paths.append(figs.plot_confusion_matrix(
        result["confusion_matrix"], classes, out_dir / f"confusion_{split}_{clf}.png",
        title=f"Confusion matrix ({clf}, {split}, epoch {epoch})"))
    p = figs.plot_embedding_map(test.lensless, test.original, test.labels, classes,
                                out_dir / f"tsne_{split}.png", seed=seed,
                                title=f"t-SNE of {split} embeddings (epoch {epoch})")
    if p is not None:
        paths.append(p)
    if metrics_jsonl is not None:
        p = figs.plot_learning_curves(metrics_jsonl, out_dir / "learning_curves.png",
                                      title=f"Learning curves ({run.name})")
        if p is not None:
            paths.append(p)
    return paths


def evaluate_run(run: str | Path, split: str = "test", classifier: str | None = None, *,
                 figures: bool = True, seed: int = 0, n_resamples: int = 1000,
                 batch_size: int = 256) -> list[dict[str, Any]]:
    """Evaluate every checkpoint of a run, write the JSON, the tables and the figures.

    Args:
        run: the run directory (``config.json``, ``metrics.jsonl``, ``checkpoints/``).
        split: the split to score.
        classifier: ``prototype``, ``knn``, ``threshold`` or ``head``; None: the run's
            :func:`default_classifier` (``head`` for a ``ce`` run, else ``prototype``).
        figures: write figures for the last checkpoint under ``run/figures``.
        seed: bootstrap and t-SNE seed.
        n_resamples: bootstrap resamples.
        batch_size: images per forward pass.

    Returns:
        One dict per checkpoint, by ascending epoch (see :func:`evaluate_checkpoint`), each with
        ``seed``: the matching seed row as a dict, or None.

    Raises:
        DataError: the run directory is missing or has no checkpoints.
        ConfigError: an unknown classifier, or one the run's loss does not support.
    """
    run = Path(run)
    if classifier is not None and classifier not in ALL_CLASSIFIERS:
        raise ConfigError(f"--classifier: unknown {classifier!r}; expected one of "
                          f"{', '.join(ALL_CLASSIFIERS)}")
    epochs = _check_run(run)
    results: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    images = "lensless"
    for i, epoch in enumerate(epochs):
        trained = load_trained(run, epoch)
        config = dict(trained.config)
        classifier = classifier or default_classifier(config.get("loss"))
        captures = getattr(trained, "captures", None) or config.get("captures")
        images = str(config.get("images") or capture_set_facts(captures)["images"])
        last = i == len(epochs) - 1
        r = evaluate_checkpoint(trained, split, classifier, seed=seed, n_resamples=n_resamples,
                                batch_size=batch_size, _want_figures=figures and last)
        row = match_run(config, epoch, captures) if split == "test" else None
        r["seed"] = row.as_dict() if row else None
        results.append(r)

    figure_paths: list[Path] = []
    if figures:
        metrics_jsonl = run / "metrics.jsonl"
        figure_paths = write_figures(run, results[-1], metrics_jsonl, seed=seed)
    for r in results:
        r.pop("_artifacts", None)

    write_json(run / f"eval_{split}_{classifier}.json", {
        "run": str(run),
        "split": split,
        "classifier": classifier,
        "images": images,
        "loss": config.get("loss"),
        "conventions": {k: v for k, v in CONVENTIONS.items()
                        if k not in ALL_CLASSIFIERS or k == classifier},
        "bootstrap": {"resamples": n_resamples, "seed": seed, "level": 0.95},
        "figures": [str(p.relative_to(run)) for p in figure_paths],
        "checkpoints": results,
    })
    write_tables(run, results, split, classifier, config, images)
    return results
