"""The classifier registry: one entry per ``--classifier`` with what the rest of the package asks
about it (no torch: the command line and the study config read it without loading evaluation).

The classifiers of embeddings share one scikit-learn style contract
(:mod:`opticsfree.evaluation.classifier`); each entry names its class as ``"module:Class"``,
imported only when asked for. Every other place reads the registry: ``opticsfree evaluate
--classifier``, the study config's ``[evaluate] classifiers`` (the distance classifiers; its
default is all of them, in registration order), the names evaluation accepts
(:data:`ALL_CLASSIFIERS`, :data:`CLASSIFIERS`), which classifiers tune on the val split, and the
convention each one writes into its result files. How :func:`~opticsfree.evaluation.report.evaluate_checkpoint`
fits and reports a classifier is still its own branch there. Code that adds a classifier at run
time calls :func:`register_classifier` before importing the modules that build their choices
from it (the study config and the command line).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from opticsfree.utils.registry import Registry


@dataclass(frozen=True)
class ClassifierSpec:
    """One registered classifier.

    Attributes:
        name: the ``--classifier`` name.
        implementation: ``"module:Class"`` of its class (an
            :class:`~opticsfree.evaluation.classifier.EmbeddingClassifier`), imported only when
            asked for; None for the classifier head (the argmax of the model's own logits).
        convention: how it classifies, one sentence (the ``conventions`` of its result files and
            the note under its table).
        head: it is the model's classifier head: only models trained with one have it, and it is
            the only classifier of a head-only loss (``LossSpec.head_only``). False: a distance
            classifier over the train originals' embeddings (:data:`CLASSIFIERS`).
        tunes_on_val: it chooses a parameter on the run's val split (k, the threshold), so it
            needs one.
    """

    name: str
    implementation: str | None
    convention: str
    head: bool = False
    tunes_on_val: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.convention:
            raise ValueError(f"classifier {self.name!r}: a name and a convention")
        if (self.implementation is None) != self.head:
            raise ValueError(f"classifier {self.name!r}: a distance classifier names its class "
                             "'module:Class' (and only the head has none)")
        if self.implementation is not None and ":" not in self.implementation:
            raise ValueError(f"classifier {self.name!r}: implementation must be 'module:Class', "
                             f"got {self.implementation!r}")

    def load_class(self) -> Any:
        """The implementing class (imported now).

        Raises:
            ValueError: the head classifier (it has no class).
        """
        if self.implementation is None:
            raise ValueError(f"classifier {self.name!r} is the model's head: it has no class")
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(module), cls)


_E = "opticsfree.evaluation"

#: The bundled classifiers, in ``--classifier`` order: one line per classifier.
_BUILTIN: tuple[ClassifierSpec, ...] = (
    ClassifierSpec("prototype", f"{_E}.prototype_classifier:PrototypeClassifier",
                   "nearest class centroid (L2-normalised mean) of the train original embeddings"),
    ClassifierSpec("knn", f"{_E}.knn_classifier:KNNClassifier",
                   "majority vote of the k nearest train originals (exact L2 search, torch.cdist + "
                   "topk); ties to the class of the nearest tied neighbour; k chosen on val from "
                   "1,3,5,10,20 by accuracy, ties to the smaller k", tunes_on_val=True),
    ClassifierSpec("threshold", f"{_E}.threshold_classifier:ThresholdClassifier",
                   "pairs (lensless, class prototype), matching when the classes agree; accept "
                   "when d <= t; t maximises the balanced verification accuracy (TAR + 1 - FAR) "
                   "/ 2 on the val pairs (smallest t among ties); accuracy/precision/recall/f1 are "
                   "closed-set (nearest prototype); reject option: 'unknown' when the nearest "
                   "prototype is farther than t; EER where FAR = FRR (linear interpolation)",
                   tunes_on_val=True),
    ClassifierSpec("head", None, "argmax of the classifier head's logits on the lensless captures",
                   head=True),
)

#: The classifiers, by name (:class:`~opticsfree.utils.registry.Registry`): ``register_classifier``
#: adds one after the registered ones, ``classifier_names`` lists them all in order,
#: ``classifier_spec`` gives an entry (ConfigError naming the registered ones for an unknown name),
#: ``classifier_literal`` the ``Literal`` annotation of a field that takes any of them.
REGISTRY: Registry[ClassifierSpec] = Registry("classifier")
register_classifier, classifier_names, classifier_spec, classifier_literal = (
    REGISTRY.register, REGISTRY.names, REGISTRY.get, REGISTRY.literal)

for _spec in _BUILTIN:
    register_classifier(_spec)


def distance_classifier_names() -> tuple[str, ...]:
    """The registered classifiers that are not the head, in registration order (every model's
    but one of a head-only loss)."""
    return tuple(n for n, s in REGISTRY.items() if not s.head)


def distance_classifier_literal() -> Any:
    """``Literal[<every distance classifier>]``: the annotation of the study config's
    ``[evaluate] classifiers`` items."""
    return Literal[distance_classifier_names()]  # type: ignore[valid-type]


if TYPE_CHECKING:
    #: The distance classifiers (every model but one of a head-only loss: ``LossSpec.head_only``).
    CLASSIFIERS: tuple[str, ...]
    #: Every classifier: the distance classifiers and the classifier head.
    ALL_CLASSIFIERS: tuple[str, ...]


def __getattr__(name: str) -> Any:
    # CLASSIFIERS and ALL_CLASSIFIERS are read from the registry on every access (PEP 562), so
    # that an import after register_classifier() sees the new classifier.
    if name == "CLASSIFIERS":
        return distance_classifier_names()
    if name == "ALL_CLASSIFIERS":
        return classifier_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
