"""The loss registry: one entry per ``--loss`` with everything the rest of the package asks
about it (no torch: the command line and the training config read it without loading the
losses).

Adding a loss is one new module (its metric term, see :mod:`opticsfree.losses.term`) and one
line in :data:`_BUILTIN` below (docs/architecture.md, "Adding a loss or a backbone"). Every
other place reads the registry: the training config's and the study config's allowed values,
``opticsfree train --loss`` and ``--mining``, the criterion, which losses have a classifier
head and which are classified by it alone (evaluation, ``bayes``, ``predict``). Code that
adds a loss at run time calls :func:`register_loss` before importing the modules that build
their choices from it (the configs and the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opticsfree.utils.registry import Registry


@dataclass(frozen=True)
class LossSpec:
    """One registered loss.

    Attributes:
        name: the ``--loss`` name.
        mining: the in-batch mining strategies it accepts; the first is the default.
        term: ``"module:Class"`` of its metric term (a subclass of
            :class:`opticsfree.losses.term.MetricTerm`, built as ``Class(mining, settings)``),
            imported only when a criterion is built; None for a loss without one (``ce``).
        uses_head: the model has a classifier head and the loss a cross-entropy term (added to
            the metric term with weight 1, the metric term weighted by ``ce_weight``).
        head_only: a run is classified by its head only: the loss never trains the original
            tower, so distances to original prototypes mean nothing (evaluation's default
            classifier is ``head``, ``bayes`` and ``predict`` use the ``ce`` likelihood).
        tuple_originals: originals per row of the seed's fixed tuples: the positives, then the
            negative (2: triplet rows, 3: the seed's quadruplet rows, 0: none).
        online_only: why the seed's fixed tuples cannot feed it ("" when they can).
        min_classes: classes it needs in the training set and in each online batch.
    """

    name: str
    mining: tuple[str, ...]
    term: str | None
    uses_head: bool = False
    head_only: bool = False
    tuple_originals: int = 2
    online_only: str = ""
    min_classes: int = 1

    def __post_init__(self) -> None:
        if not self.name or not self.mining:
            raise ValueError(f"loss {self.name!r}: a name and at least one mining strategy")
        if self.head_only and not self.uses_head:
            raise ValueError(f"loss {self.name!r}: head_only needs uses_head")
        if self.term is None and not self.head_only:
            raise ValueError(f"loss {self.name!r}: without a metric term it is head_only")
        if self.term is not None and ":" not in self.term:
            raise ValueError(f"loss {self.name!r}: term must be 'module:Class', got {self.term!r}")

    @property
    def default_mining(self) -> str:
        """The default in-batch mining."""
        return self.mining[0]

    @property
    def uses_originals(self) -> bool:
        """Whether training updates the original tower (False for a head-only loss)."""
        return not self.head_only


_TRIPLET = "opticsfree.losses.triplet:TripletTerm"

#: The bundled losses, in ``--loss`` order: one line per loss.
_BUILTIN: tuple[LossSpec, ...] = (
    LossSpec("triplet", ("all", "semihard", "hard"), _TRIPLET),
    LossSpec("quadruplet", ("all", "hard"), "opticsfree.losses.quadruplet_loss:QuadrupletTerm", tuple_originals=3),
    LossSpec("quadruplet-chen", ("hard", "all"), "opticsfree.losses.quadruplet_chen_loss:ChenQuadrupletTerm",
             tuple_originals=0, online_only="the seed's tuples have no second negative", min_classes=3),
    LossSpec("ce", ("none",), None, uses_head=True, head_only=True, tuple_originals=0),
    LossSpec("ce+triplet", ("all", "semihard", "hard"), _TRIPLET, uses_head=True),
)

#: The losses, by name (:class:`~opticsfree.utils.registry.Registry`).
REGISTRY: Registry[LossSpec] = Registry("loss")
#: Add a loss (after the registered ones). Modules that build choices when imported (the
#: training and study configs, the command line) see it when it is registered before they are
#: imported; :func:`loss_spec` and the criterion see it at once.
register_loss = REGISTRY.register
#: The registered loss names, in registration order.
loss_names = REGISTRY.names
#: The entry of a loss (ConfigError naming the registered ones for an unknown name).
loss_spec = REGISTRY.get
#: ``Literal[<every registered name>]``: the annotation of a loss field.
loss_literal = REGISTRY.literal

for _spec in _BUILTIN:
    register_loss(_spec)


def default_mining(loss: str) -> str:
    """The default in-batch mining of ``loss``."""
    return loss_spec(loss).default_mining


def classified_by_head(loss: str | None) -> bool:
    """Whether runs of ``loss`` are classified by their head only (False for an unknown or
    missing name: such a run is classified by distances)."""
    spec = REGISTRY.find(loss)
    return spec is not None and spec.head_only


if TYPE_CHECKING:
    #: Names accepted by :class:`~opticsfree.losses.criterion.Criterion` (``--loss``).
    LOSSES: tuple[str, ...]
    #: Mining strategies accepted by each loss (the first is the default).
    MINING: dict[str, tuple[str, ...]]


def __getattr__(name: str) -> Any:
    # LOSSES and MINING are read from the registry on every access (PEP 562), so that an
    # import after register_loss() sees the new loss.
    if name == "LOSSES":
        return loss_names()
    if name == "MINING":
        return {n: s.mining for n, s in REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
