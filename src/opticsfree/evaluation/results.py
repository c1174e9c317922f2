"""Typed results of ``opticsfree evaluate``: one :class:`CheckpointEvaluation` per checkpoint,
gathered in an :class:`Evaluation`.

``to_json()`` gives the objects of the files and of ``--json`` (the keys are a contract: see
docs/metric-learning.md, "Evaluation"); numbers are percent unless named otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opticsfree.evaluation.embed import Embedded
from opticsfree.evaluation.names import classifier_spec
from opticsfree.evaluation.seed_tables import SeedRow
from opticsfree.losses.names import classified_by_head

#: Keys left out of a checkpoint's summary (``to_json(detail=False)``: ``--json``, the study).
DETAIL_KEYS = ("per_class", "confusion_matrix", "classes")

#: What the numbers of every result file mean (the ``conventions`` of its JSON, before the
#: classifier's own: ``ClassifierSpec.convention``, :func:`conventions`).
BASE_CONVENTIONS = {
    "units": "percent (0-100)",
    "precision_recall_f1": "support-weighted averages over classes, as in the seed's tables "
                           "(weighted recall equals accuracy); macro_* are unweighted means",
    "zero_division": "a class never predicted has precision 0",
    "accuracy_ci": "percentile bootstrap 95% interval, 1000 resamples of the split's rows, seeded",
    "retrieval": "PML AccuracyCalculator; queries = lensless embeddings of the split, references "
                 "= originals of the same split (one per scene); precision_at_1 and MAP@R",
}
#: The fused accuracy's convention (after the classifier's, multi-frame sets only).
FUSED_CONVENTION = ("multi-frame sets only (null otherwise): one prediction per scene from all of "
                    "its frames, scored over scenes (n_scenes); prototype, knn and threshold "
                    "classify the L2-normalised mean of the frame embeddings, head the argmax of "
                    "the mean log-softmax (the product of the frame likelihoods with a flat "
                    "prior); accuracy and its bootstrap CI are single-frame (per row) beside it")


def conventions(classifier: str, fused: bool = True) -> dict[str, str]:
    """The ``conventions`` of a result file of ``classifier``: :data:`BASE_CONVENTIONS`, the
    classifier's own (:mod:`opticsfree.evaluation.names`), and ``fused`` (:data:`FUSED_CONVENTION`)
    when asked for.

    Raises:
        ConfigError: an unknown classifier.
    """
    out = {**BASE_CONVENTIONS, classifier: classifier_spec(classifier).convention}
    if fused:
        out["fused"] = FUSED_CONVENTION
    return out


def default_classifier(loss: str | None) -> str:
    """The classifier to use when none is named: ``head`` for a head-only loss (one that trains
    only the lensless tower and its head: :func:`opticsfree.losses.names.classified_by_head`),
    ``prototype`` otherwise."""
    return "head" if classified_by_head(loss) else "prototype"


@dataclass(frozen=True)
class KnnParams:
    """What the ``knn`` classifier chose on the val split.

    Attributes:
        k: the chosen number of neighbours.
        val_accuracy_by_k: val accuracy (percent) of every candidate k.
        gallery_size: train originals searched (one per scene).
    """

    k: int
    val_accuracy_by_k: dict[int, float]
    gallery_size: int

    def to_json(self) -> dict[str, Any]:
        """``{"k", "val_accuracy_by_k" (keys as strings), "gallery_size"}``."""
        return {"k": self.k,
                "val_accuracy_by_k": {str(k): a for k, a in self.val_accuracy_by_k.items()},
                "gallery_size": self.gallery_size}


@dataclass(frozen=True)
class ThresholdParams:
    """The ``threshold`` classifier: t chosen on val, verification and reject numbers on the
    evaluated split (percent, except the distances ``threshold`` and ``eer_threshold``).

    Attributes:
        threshold: t, the distance below which a (capture, prototype) pair matches.
        val_verification_accuracy: balanced verification accuracy of the val pairs at t.
        val_eer: equal error rate of the val pairs.
        verification_accuracy: balanced verification accuracy of the split's pairs at t.
        tar: true-accept rate at t.
        far: false-accept rate at t.
        eer: equal error rate of the split's pairs.
        eer_threshold: the distance where FAR = FRR.
        reject_rate: captures whose nearest prototype is farther than t.
        accepted_accuracy: accuracy of the accepted captures (None when none is accepted).
        accuracy_with_reject: accuracy counting a rejected capture as wrong.
    """

    threshold: float
    val_verification_accuracy: float
    val_eer: float
    verification_accuracy: float
    tar: float
    far: float
    eer: float
    eer_threshold: float
    reject_rate: float
    accepted_accuracy: float | None
    accuracy_with_reject: float

    def to_json(self) -> dict[str, Any]:
        """The fields, in order."""
        return asdict(self)


@dataclass
class Artifacts:
    """What the figures of one checkpoint need (never written to JSON).

    Attributes:
        test: the evaluated split's embeddings.
        prototypes: (C, D) class prototypes of the train originals.
        threshold: t chosen on val (None without a val split or with one class).
    """

    test: Embedded
    prototypes: np.ndarray
    threshold: float | None = None


@dataclass
class CheckpointEvaluation:
    """One checkpoint scored on one split with one classifier.

    Attributes:
        epoch: the checkpoint's epoch.
        classifier: a registered classifier (:mod:`opticsfree.evaluation.names`).
        split: the evaluated split.
        n: rows scored (one per (scene, frame)).
        accuracy, precision, recall, f1: percent; precision/recall/F1 support-weighted.
        accuracy_ci: percentile bootstrap 95% interval of the accuracy.
        macro_precision, macro_recall, macro_f1: unweighted means over classes.
        n_scenes: distinct scenes among the rows.
        fused_accuracy: accuracy over scenes of one prediction from all the frames of each
            scene (test-time fusion; FUSED_CONVENTION), None when every scene has one frame.
        fused_accuracy_ci: its percentile bootstrap 95% interval over scenes (None likewise).
        precision_at_1, map_at_r: retrieval of the split's originals by its captures.
        per_class: ``{"class", "precision", "recall", "f1", "support"}`` per class.
        confusion_matrix: C x C counts, rows true, columns predicted.
        classes: class names in label order.
        params: what ``knn`` or ``threshold`` chose on val (None for the others).
        seed: the seed study's published row for this run and epoch (test split only).
        artifacts: embeddings for the figures (only when requested; not in JSON).
    """

    epoch: int
    classifier: str
    split: str
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    accuracy_ci: tuple[float, float]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    n_scenes: int
    fused_accuracy: float | None
    fused_accuracy_ci: tuple[float, float] | None
    precision_at_1: float
    map_at_r: float
    per_class: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    classes: list[str]
    params: KnnParams | ThresholdParams | None = None
    seed: SeedRow | None = None
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)

    def to_json(self, detail: bool = True) -> dict[str, Any]:
        """The checkpoint's JSON object.

        Args:
            detail: include ``per_class``, ``confusion_matrix`` and ``classes`` (the file);
                False gives the summary printed by ``evaluate --json``.

        Returns:
            ``{"epoch", "classifier", "split", "n", "accuracy", "precision", "recall", "f1",
            "accuracy_ci", "macro_precision", "macro_recall", "macro_f1", "n_scenes",
            "fused_accuracy", "fused_accuracy_ci", "precision_at_1", "map_at_r", <params>, ["per_class", "confusion_matrix", "classes"], "seed"}``.
        """
        out: dict[str, Any] = {
            "epoch": self.epoch, "classifier": self.classifier, "split": self.split, "n": self.n,
            "accuracy": self.accuracy, "precision": self.precision, "recall": self.recall,
            "f1": self.f1, "accuracy_ci": list(self.accuracy_ci),
            "macro_precision": self.macro_precision, "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1, "n_scenes": self.n_scenes,
            "fused_accuracy": self.fused_accuracy,
            "fused_accuracy_ci": (list(self.fused_accuracy_ci)
                                  if self.fused_accuracy_ci is not None else None),
            "precision_at_1": self.precision_at_1,
            "map_at_r": self.map_at_r,
        }
        if self.params is not None:
            out.update(self.params.to_json())
        if detail:
            out.update(per_class=self.per_class, confusion_matrix=self.confusion_matrix,
                       classes=self.classes)
        out["seed"] = self.seed.as_dict() if self.seed else None
        return out


@dataclass
class Evaluation:
    """Every checkpoint of a run scored with one classifier on one split.

    Attributes:
        split: the evaluated split.
        classifier: the classifier used.
        loss: the run's training loss.
        images: ``"lensless"`` or ``"reconstructed"`` (from the capture set's manifest).
        checkpoints: one result per checkpoint, in the order evaluated (ascending epoch).
        run: the run directory, as recorded in the file (None when not given).
        captures: the other capture set whose split was scored (None: the run's own).
        seed: the bootstrap and t-SNE seed.
        n_resamples: bootstrap resamples.
        out: the folder the outputs were written to (None until written).
        figures: the figure files written.
    """

    split: str
    classifier: str
    loss: str
    images: str
    checkpoints: list[CheckpointEvaluation]
    run: str | None = None
    captures: str | None = None
    seed: int = 0
    n_resamples: int = 1000
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        """``OUT/eval_<split>_<classifier>.json``."""
        return self._out / f"eval_{self.split}_{self.classifier}.json"

    @property
    def table_paths(self) -> tuple[Path, Path]:
        """The evaluation's two tables in OUT (:func:`table_paths`): ``table.md``/``table.csv``
        for the run's default classifier, ``table_<classifier>.*`` for any other (and
        ``_<split>`` before the extension for a split other than test)."""
        return table_paths(self._out, self.split, self.classifier, self.loss)

    @property
    def _out(self) -> Path:
        if self.out is None:
            raise ValueError("this Evaluation has not been written (out is None)")
        return self.out

    def to_json(self) -> dict[str, Any]:
        """The object of ``eval_<split>_<classifier>.json``: ``{"run", "captures", "split",
        "classifier", "images", "loss", "conventions", "bootstrap", "figures" (relative to OUT),
        "checkpoints"}``; ``captures`` is null when the run's own split was scored."""
        base = self.out or Path(".")
        return {
            "run": self.run,
            "captures": self.captures,
            "split": self.split,
            "classifier": self.classifier,
            "images": self.images,
            "loss": self.loss,
            "conventions": conventions(self.classifier, any(c.fused_accuracy is not None
                                                            for c in self.checkpoints)),
            "bootstrap": {"resamples": self.n_resamples, "seed": self.seed, "level": 0.95},
            "figures": [str(p.relative_to(base)) for p in self.figures],
            "checkpoints": [c.to_json() for c in self.checkpoints],
        }


def table_paths(out: str | Path, split: str, classifier: str | None = None,
                loss: str | None = None) -> tuple[Path, Path]:
    """``(md, csv)``: the paths of one classifier's tables in ``out``, one pair per classifier
    and split, so that evaluating a run with several classifiers keeps every table.

    The run's default classifier (:func:`default_classifier` of ``loss``: ``head`` for a ``ce``
    run, ``prototype`` otherwise) writes ``table.md``/``table.csv``, any other classifier
    ``table_<classifier>.md``/``.csv``; a split other than test adds ``_<split>``
    (``table_<split>.*``, ``table_<classifier>_<split>.*``).

    Args:
        out: the output folder.
        split: the evaluated split.
        classifier: the classifier; None: the default's (``table.*``).
        loss: the run's training loss, which decides the default classifier (None: a
            distance-trained run, whose default is ``prototype``).
    """
    stem = "table"
    if classifier is not None and classifier != default_classifier(loss):
        stem += f"_{classifier}"
    if split != "test":
        stem += f"_{split}"
    return Path(out) / f"{stem}.md", Path(out) / f"{stem}.csv"
