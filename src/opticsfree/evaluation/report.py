"""Evaluate the checkpoints of a metric-learning run and write its tables and figures.

:func:`evaluate_checkpoint` scores one loaded model (an
:class:`opticsfree.evaluation.contract.TrainedEmbedder`, e.g. a
:class:`opticsfree.training.TrainedModel`); :func:`evaluate_models` scores every checkpoint of a
run and writes the outputs into the folder it is given (``opticsfree evaluate`` gives the run
directory). Nothing here loads a model: the caller does.

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

The test split is used only for the final numbers. Outputs, under the output folder OUT:

- ``eval_<split>_<classifier>.json``: everything (per checkpoint: metrics, per-class report,
  confusion matrix, classifier parameters, the matching seed row).
- ``table.md`` and ``table.csv`` for the run's default classifier (``head`` for a ``ce`` run,
  ``prototype`` otherwise), ``table_<classifier>.md``/``.csv`` for any other, so that each
  classifier keeps its own table (a split other than test adds ``_<split>``: ``table_<split>.*``,
  ``table_<classifier>_<split>.*``; :func:`table_paths`): the seed's layout (Accuracy,
  Precision, Recall, F1score, Epochs), with the seed's published row beside ours where the run
  matches one of the seed's tables (a row label column comes first).
- ``figures/*.png`` for the last checkpoint: distance histograms with the threshold, confusion
  matrix, t-SNE map, learning curves.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy.special import log_softmax

from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.evaluation import figures as figs
from opticsfree.evaluation.contract import TrainedEmbedder
from opticsfree.evaluation.embed import (embed_split, fuse_rows, l2_normalise, load_scored_split,
                                        scene_groups, train_gallery)
from opticsfree.evaluation.knn_classifier import DEFAULT_KS, KNNClassifier
from opticsfree.evaluation.metrics import (bootstrap_accuracy_ci, classification_metrics,
                                           retrieval_metrics)
from opticsfree.evaluation.prototype_classifier import PrototypeClassifier
from opticsfree.evaluation.names import classifier_names, classifier_spec, distance_classifier_names
from opticsfree.evaluation.results import (DETAIL_KEYS, FUSED_CONVENTION, Artifacts,
                                           CheckpointEvaluation, Evaluation, KnnParams,
                                           ThresholdParams, default_classifier, table_paths)
from opticsfree.evaluation.seed_tables import capture_set_facts, match_run
from opticsfree.evaluation.threshold_classifier import (UNKNOWN, ThresholdClassifier,
                                                        pair_distances)
from opticsfree.losses.names import classified_by_head
from opticsfree.utils.document import Document, Note, Paragraph, Row, Table, render_markdown
from opticsfree.utils.io import write_json, write_text

__all__ = ["DETAIL_KEYS", "TABLE_COLUMNS",
           "default_classifier", "evaluate_checkpoint", "evaluate_models", "summary_document",
           "table_paths", "table_rows", "write_evaluation", "write_figures", "write_tables"]


def _check_classifier(classifier: str) -> None:
    if classifier not in classifier_names():
        raise ConfigError(f"--classifier: unknown {classifier!r}; expected one of "
                          f"{', '.join(classifier_names())}")


def evaluate_checkpoint(model: TrainedEmbedder, split: str = "test",
                        classifier: str = "prototype", *, seed: int = 0,
                        n_resamples: int = 1000, batch_size: int = 256,
                        figures: bool = False,
                        captures: str | Path | None = None) -> CheckpointEvaluation:
    """Evaluate one trained model on one split with one classifier.

    Args:
        model: the loaded checkpoint (its ``train`` originals give the prototypes and the kNN
            gallery, its ``val`` split tunes ``k`` and the threshold).
        split: the split to score (``"test"``; ``"val"`` for model selection).
        classifier: a registered classifier (:mod:`opticsfree.evaluation.names`).
        seed: bootstrap seed.
        n_resamples: bootstrap resamples.
        batch_size: images per forward pass.
        figures: keep the embeddings the figures need (``artifacts``; the val split is then
            embedded for the threshold line when the run has one).
        captures: score ``split`` of another capture set with the same classes (e.g. a
            multi-frame test set, for the fused accuracy); None: the run's own.

    Returns:
        The checkpoint's numbers; ``seed`` is the seed study's matching row (test split only).

    Raises:
        ConfigError: unknown classifier, ``head`` for a model without a head, or a distance
            classifier for a model trained with a head-only loss (``ce``).
        DataError: ``knn`` or ``threshold`` for a run without a val split, or an empty split.
    """
    _check_classifier(classifier)
    if classifier == "head" and not model.has_head:
        raise ConfigError(f"--classifier head: the model (loss {model.loss!r}) "
                          f"has no classifier head; use one of {', '.join(distance_classifier_names())}")
    if classifier != "head" and classified_by_head(model.loss):
        raise ConfigError(f"--classifier {classifier}: the model was trained with loss "
                          f"{model.loss!r}, which never trains the original "
                          "tower, so distances to the originals mean nothing; use "
                          "--classifier head")
    classes = list(model.classes)
    n_classes = len(classes)
    data = load_scored_split(model, split, captures)
    test = embed_split(model, data, batch_size=batch_size, name=split)
    prototypes = None
    if classifier != "head" or figures:  # the head needs no train gallery
        ref = train_gallery(model, batch_size)
        gallery, gallery_labels, prototypes = ref.originals, ref.labels, ref.prototypes

    params: KnnParams | ThresholdParams | None = None
    threshold = None
    val = None
    tunes_on_val = classifier_spec(classifier).tunes_on_val
    if tunes_on_val or figures:
        try:
            val = embed_split(model, model.load_split("val"), domains=("lensless",),
                              batch_size=batch_size, name="val")
        except OpticsfreeError as e:
            if tunes_on_val:
                raise type(e)(f"--classifier {classifier} tunes on the run's val split: {e}") \
                    from None
            val = None  # figures only: draw the histogram without a threshold

    predict: Any = None  # embeddings -> classes, for the fused frames
    logits = None
    if classifier == "prototype":
        proto = PrototypeClassifier(n_classes)
        proto.prototypes = prototypes  # the train gallery's, computed once by train_gallery
        predict = proto.predict
        pred = predict(test.lensless)
    elif classifier == "knn":
        knn = KNNClassifier(n_classes=n_classes).fit(gallery, gallery_labels)
        by_k = knn.select_k(val.lensless, val.labels, DEFAULT_KS)
        predict = knn.predict
        pred = knn.predict(test.lensless)
        params = KnnParams(k=knn.k, val_accuracy_by_k={k: 100.0 * a for k, a in by_k.items()},
                           gallery_size=knn.gallery_size)
    elif classifier == "threshold":
        thr = ThresholdClassifier(prototypes).fit(val.lensless, val.labels)
        predict = thr.predict  # closed set: the nearest prototype
        pred = predict(test.lensless)
        open_pred = np.where(thr.reject(test.lensless), UNKNOWN, pred)
        ver = thr.verify(test.lensless, test.labels)
        accepted = open_pred != UNKNOWN
        threshold = thr.threshold
        params = ThresholdParams(
            threshold=float(thr.threshold),
            val_verification_accuracy=100.0 * thr.fit_accuracy,
            val_eer=100.0 * thr.fit_eer,
            verification_accuracy=100.0 * ver["verification_accuracy"],
            tar=100.0 * ver["tar"],
            far=100.0 * ver["far"],
            eer=100.0 * ver["eer"],
            eer_threshold=ver["eer_threshold"],
            reject_rate=100.0 * float(1.0 - accepted.mean()),
            accepted_accuracy=(100.0 * float((open_pred[accepted] == test.labels[accepted]).mean())
                               if accepted.any() else None),
            accuracy_with_reject=100.0 * float((open_pred == test.labels).mean()))
    else:  # head
        logits = _head_logits(model, data, batch_size)
        pred = logits.argmax(axis=1)

    if threshold is None and val is not None and n_classes >= 2 and prototypes is not None:
        threshold = ThresholdClassifier(prototypes).fit(val.lensless, val.labels).threshold

    m = classification_metrics(test.labels, pred, n_classes, classes)
    lo, hi = bootstrap_accuracy_ci(test.labels, pred, n_resamples, seed=seed)
    groups = scene_groups(test.ids)
    fused = fused_ci = None
    if groups.multi_frame:  # one prediction per scene from all of its frames
        if logits is not None:
            fused_pred = fuse_rows(log_softmax(logits.astype(np.float64), axis=1), groups).argmax(axis=1)
        else:
            fused_pred = predict(l2_normalise(fuse_rows(test.lensless, groups)))
        scene_labels = test.labels[groups.first]
        fused = 100.0 * float((fused_pred == scene_labels).mean())
        fused_ci = bootstrap_accuracy_ci(scene_labels, fused_pred, n_resamples, seed=seed)
    originals, original_labels = test.unique_originals()
    retrieval = retrieval_metrics(test.lensless, test.labels, originals, original_labels)
    return CheckpointEvaluation(
        epoch=int(model.epoch), classifier=classifier, split=split, n=m["n"],
        accuracy=m["accuracy"], precision=m["precision"], recall=m["recall"], f1=m["f1"],
        accuracy_ci=(lo, hi), macro_precision=m["macro_precision"],
        macro_recall=m["macro_recall"], macro_f1=m["macro_f1"],
        n_scenes=len(groups.first), fused_accuracy=fused, fused_accuracy_ci=fused_ci,
        precision_at_1=retrieval["precision_at_1"], map_at_r=retrieval["map_at_r"],
        per_class=m["per_class"], confusion_matrix=m["confusion_matrix"], classes=classes,
        params=params,
        seed=(match_run({"loss": model.loss}, model.epoch, model.captures)
              if split == "test" and captures is None else None),
        artifacts=(Artifacts(test=test, prototypes=prototypes, threshold=threshold) if figures
                   else None))


def _head_logits(model: TrainedEmbedder, data: Any, batch_size: int) -> np.ndarray:
    """float32 (N, C) logits of the split's lensless captures."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, int(data.lensless.shape[0]), batch_size):
            logits = model.logits(data.lensless[s:s + batch_size])
            if logits is None:
                raise ConfigError("--classifier head: the model returned no logits")
            out.append(torch.as_tensor(logits).float().cpu().numpy())
    return np.concatenate(out)


def evaluate_models(models: Iterable[TrainedEmbedder], out: str | Path, split: str = "test",
                    classifier: str | None = None, *, run: str | Path | None = None,
                    metrics: str | Path | None = None, figures: bool = True, seed: int = 0,
                    n_resamples: int = 1000, batch_size: int = 256,
                    captures: str | Path | None = None) -> Evaluation:
    """Evaluate the checkpoints of a run and write the JSON, the tables and the figures.

    Args:
        models: the run's checkpoints, loaded, by ascending epoch (an iterator is consumed one
            model ahead, so a generator that loads them keeps at most two in memory).
        out: the output folder (``opticsfree evaluate`` uses the run directory).
        split: the split to score.
        classifier: ``prototype``, ``knn``, ``threshold`` or ``head``; None: the run's
            :func:`default_classifier` (``head`` for a ``ce`` run, else ``prototype``).
        run: the run directory, recorded in the JSON (``"run"``).
        metrics: the run's ``metrics.jsonl`` for the learning-curves figure (None: no such
            figure).
        figures: write figures for the last checkpoint under ``OUT/figures``.
        seed: bootstrap and t-SNE seed.
        n_resamples: bootstrap resamples.
        batch_size: images per forward pass.
        captures: score ``split`` of another capture set with the same classes (recorded as
            ``"captures"`` in the JSON); None: the run's own.

    Returns:
        The evaluation, written to ``OUT`` (:func:`write_evaluation`).

    Raises:
        DataError: ``models`` is empty.
        ConfigError: an unknown classifier, or one the run's loss does not support.
    """
    if classifier is not None:
        _check_classifier(classifier)
    out = Path(out)
    checkpoints: list[CheckpointEvaluation] = []
    it = iter(models)
    model = next(it, None)
    if model is None:
        raise DataError(f"{out}: no checkpoints to evaluate")
    loss, images = model.loss, "lensless"
    while model is not None:
        following = next(it, None)  # one ahead: the last checkpoint gets the figures
        classifier = classifier or default_classifier(model.loss)
        loss = model.loss
        images = str(capture_set_facts(model.captures)["images"])
        checkpoints.append(evaluate_checkpoint(
            model, split, classifier, seed=seed, n_resamples=n_resamples, batch_size=batch_size,
            figures=figures and following is None, captures=captures))
        model = following
    evaluation = Evaluation(split=split, classifier=str(classifier), loss=loss, images=images,
                            checkpoints=checkpoints, run=None if run is None else str(run),
                            seed=seed, n_resamples=n_resamples,
                            captures=None if captures is None else str(Path(captures).resolve()))
    write_evaluation(evaluation, out, metrics=metrics)
    return evaluation


def write_evaluation(evaluation: Evaluation, out: str | Path,
                     metrics: str | Path | None = None) -> Evaluation:
    """Write an evaluation into ``out``: the figures of the last checkpoint (when it carries
    ``artifacts``), ``eval_<split>_<classifier>.json`` and the tables.

    Sets ``evaluation.out`` and ``evaluation.figures``, and drops the checkpoints' artifacts.

    Args:
        evaluation: the result of :func:`evaluate_models` (or built from
            :func:`evaluate_checkpoint` results).
        out: the output folder.
        metrics: the run's ``metrics.jsonl`` (learning-curves figure), or None.

    Returns:
        ``evaluation``.
    """
    out = Path(out)
    evaluation.out = out
    last = evaluation.checkpoints[-1] if evaluation.checkpoints else None
    if last is not None and last.artifacts is not None:
        evaluation.figures = write_figures(out, last, None if metrics is None else Path(metrics),
                                           seed=evaluation.seed)
    for c in evaluation.checkpoints:
        c.artifacts = None
    write_json(evaluation.json_path, evaluation.to_json())
    write_tables(out, evaluation)
    return evaluation


TABLE_COLUMNS = ["Model", "Accuracy", "Precision", "Recall", "F1score", "Epochs"]


def table_rows(results: list[CheckpointEvaluation], label: str) -> list[list[Any]]:
    """Rows in the seed's layout: ours per checkpoint, then the seed's row of that epoch."""
    rows: list[list[Any]] = []
    for r in results:
        rows.append([label, r.accuracy, r.precision, r.recall, r.f1, r.epoch])
        s = r.seed
        if s:
            rows.append([f"seed Table {s.table} ({s.loss}, {s.images})", s.accuracy,
                         s.precision, s.recall, s.f1, s.epochs])
    return rows


def write_tables(out: str | Path, evaluation: Evaluation) -> tuple[Path, Path]:
    """Write the classifier's two tables (seed layout) for evaluated checkpoints:
    ``table.md``/``table.csv`` for the run's default classifier, ``table_<classifier>.*`` for
    another, ``_<split>`` added for a split other than test (:func:`table_paths`).

    Args:
        out: the output folder; its name titles the Markdown table.
        evaluation: the evaluated checkpoints (with their seed rows), split, classifier, loss
            and image kind (for the row label).

    Returns:
        The two paths (:func:`table_paths`).
    """
    out = Path(out)
    split, classifier = evaluation.split, evaluation.classifier
    md_path, csv_path = table_paths(out, split, classifier, evaluation.loss)
    label = f"ours ({evaluation.loss}, {evaluation.images}, {classifier})"
    rows = table_rows(evaluation.checkpoints, label)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TABLE_COLUMNS)
    for row in rows:
        w.writerow([row[0]] + [f"{v:.2f}" for v in row[1:5]] + [int(row[5])])
    write_text(csv_path, buf.getvalue())

    seed_note = (" Seed rows: the seed study's published CIFAR-10 test numbers for the same "
                 "loss, images and epochs." if any(r.seed for r in evaluation.checkpoints) else "")
    doc = Document(f"{out.name}: {classifier} classifier, {split} split", [
        Paragraph("Percent. Precision, recall and F1 are support-weighted averages over classes "
                  "(as in the seed's tables, where recall equals accuracy). Classifier: "
                  f"{classifier_spec(classifier).convention}." + seed_note),
        Table(TABLE_COLUMNS,
              [Row([row[0]] + [f"{v:.2f}" for v in row[1:5]] + [int(row[5])],
                   reference=row[0] != label) for row in rows],
              align=["left"] + ["right"] * (len(TABLE_COLUMNS) - 1)),
    ])
    write_text(md_path, render_markdown(doc, out))
    return md_path, csv_path


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary_document(evaluation: Evaluation) -> Document:
    """The human-readable summary of a written evaluation (``opticsfree evaluate`` prints it
    with :func:`~opticsfree.utils.document.render_terminal`).

    One row per checkpoint (accuracy with its bootstrap interval, weighted precision, recall
    and F1, macro-F1, P@1, MAP@R and, where the run matches one, the seed's accuracy); for
    ``knn`` and ``threshold`` a second table of the parameters chosen on val; the classifier's
    convention; the written files.

    Args:
        evaluation: from :func:`evaluate_models` or :func:`write_evaluation` (``out`` set).

    Returns:
        The document; its title names the run (the output folder when no run was recorded).

    Raises:
        ValueError: the evaluation has not been written (``out`` is None).
    """
    md, csv_path = evaluation.table_paths  # raises ValueError when not written
    out = Path(str(evaluation.out))
    results, clf, split = evaluation.checkpoints, evaluation.classifier, evaluation.split
    name = Path(evaluation.run).name if evaluation.run is not None else out.name
    has_seed = any(r.seed for r in results)
    has_fused = any(r.fused_accuracy is not None for r in results)
    right = ["right"]
    columns = (["Epoch", "Accuracy", "95% CI"] + (["Fused", "Fused CI"] if has_fused else [])
               + ["Precision", "Recall", "F1", "macro-F1", "P@1", "MAP@R"]
               + (["Seed acc."] if has_seed else []))
    rows = [Row([str(r.epoch), _fmt(r.accuracy), f"{r.accuracy_ci[0]:.2f}-{r.accuracy_ci[1]:.2f}"]
                + ([_fmt(r.fused_accuracy),
                    f"{r.fused_accuracy_ci[0]:.2f}-{r.fused_accuracy_ci[1]:.2f}"
                    if r.fused_accuracy_ci else "-"] if has_fused else [])
                + [_fmt(r.precision), _fmt(r.recall), _fmt(r.f1), _fmt(r.macro_f1),
                   _fmt(r.precision_at_1), _fmt(r.map_at_r)]
                + ([_fmt(r.seed.accuracy) if r.seed else "-"] if has_seed else []))
            for r in results]
    blocks: list[Any] = [
        Table(columns, rows, align=right * len(columns)),
        Note("Percent. Precision/recall/F1 support-weighted (as in the seed's tables); macro-F1 "
             f"unweighted; 95% CI: bootstrap, {evaluation.n_resamples} resamples; P@1 and MAP@R: "
             f"lensless queries vs {split} originals"
             + ("; Seed: the seed's published accuracy for this loss, images and epochs"
                if has_seed else "")
             + (f"; Fused: one prediction per scene from all of its frames ({FUSED_CONVENTION})"
                if has_fused else "") + "."),
    ]
    params: list[Any] = [r.params for r in results]
    if clf == "knn":
        columns = ["Epoch", "k", "val acc. at k", "gallery"]
        rows = [Row([str(r.epoch), str(p.k), _fmt(p.val_accuracy_by_k[p.k]), str(p.gallery_size)])
                for r, p in zip(results, params)]
    elif clf == "threshold":
        columns = ["Epoch", "t", "val verif.", f"{split} verif.", "TAR", "FAR", "EER", "reject",
                   "acc. w/ reject"]
        rows = [Row([str(r.epoch), _fmt(p.threshold, 3), _fmt(p.val_verification_accuracy),
                     _fmt(p.verification_accuracy), _fmt(p.tar), _fmt(p.far), _fmt(p.eer),
                     _fmt(p.reject_rate), _fmt(p.accuracy_with_reject)])
                for r, p in zip(results, params)]
    if classifier_spec(clf).tunes_on_val:
        blocks.append(Table(columns, rows, caption=f"{clf}: parameters chosen on val",
                            align=right * len(columns)))
    blocks.append(Note(f"{clf}: {classifier_spec(clf).convention}."))
    figures = f", {out / 'figures'}/" if evaluation.figures else ""
    blocks.append(Paragraph(f"wrote {md}, {csv_path}, {evaluation.json_path}{figures}"))
    return Document(f"{name}: {clf} classifier, {split} split", blocks)


def write_figures(out: Path, result: CheckpointEvaluation, metrics_jsonl: Path | None = None,
                  seed: int = 0) -> list[Path]:
    """Write the figures of one evaluated checkpoint under ``out/figures``.

    ``result`` must come from :func:`evaluate_checkpoint` with ``figures=True`` (it carries
    the embeddings). Returns the written paths.
    """
    art = result.artifacts
    if art is None:
        raise ValueError("write_figures needs a result evaluated with figures=True")
    split, clf, epoch = result.split, result.classifier, result.epoch
    classes = result.classes
    out_dir = out / "figures"
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
        result.confusion_matrix, classes, out_dir / f"confusion_{split}_{clf}.png",
        title=f"Confusion matrix ({clf}, {split}, epoch {epoch})"))
    p = figs.plot_embedding_map(test.lensless, test.original, test.labels, classes,
                                out_dir / f"tsne_{split}.png", seed=seed,
                                title=f"t-SNE of {split} embeddings (epoch {epoch})")
    if p is not None:
        paths.append(p)
    if metrics_jsonl is not None:
        p = figs.plot_learning_curves(metrics_jsonl, out_dir / "learning_curves.png",
                                      title=f"Learning curves ({out.name})")
        if p is not None:
            paths.append(p)
    return paths
