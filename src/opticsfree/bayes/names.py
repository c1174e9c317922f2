"""The likelihood registry: one entry per ``--likelihood`` (no NumPy, no torch: the command line
reads it without loading the Bayes package's math).

:func:`opticsfree.bayes.likelihood.choose_likelihood` (``bayes`` and ``predict``) checks a name
against it, ``opticsfree bayes --likelihood`` lists its names (after ``auto``), and a
:class:`~opticsfree.inference.bundle.Classifier` records one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opticsfree.utils.registry import Registry


@dataclass(frozen=True)
class LikelihoodSpec:
    """One registered likelihood p(x | c) (docs/bayes.md).

    Attributes:
        name: the ``--likelihood`` name.
        description: what its scores are, a few words (``--likelihood``'s help).
        needs_head: its scores are the classifier head's logits: only a model trained with a
            head has it.
    """

    name: str
    description: str
    needs_head: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.description:
            raise ValueError(f"likelihood {self.name!r}: a name and a description")


#: The bundled likelihoods, in ``--likelihood`` order: one line per likelihood.
_BUILTIN: tuple[LikelihoodSpec, ...] = (
    LikelihoodSpec("metric", "prototype distances"),
    LikelihoodSpec("ce", "classifier head", needs_head=True),
)

#: The likelihoods, by name (:class:`~opticsfree.utils.registry.Registry`): ``register_likelihood``
#: adds one, ``likelihood_names`` lists them in order, ``likelihood_spec`` gives an entry
#: (ConfigError naming the registered ones for an unknown name).
REGISTRY: Registry[LikelihoodSpec] = Registry("likelihood")
register_likelihood, likelihood_names, likelihood_spec = REGISTRY.register, REGISTRY.names, REGISTRY.get

for _spec in _BUILTIN:
    register_likelihood(_spec)


if TYPE_CHECKING:
    #: The likelihood names (``metric``: prototype distances; ``ce``: classifier-head logits).
    LIKELIHOODS: tuple[str, ...]


def __getattr__(name: str) -> Any:
    # LIKELIHOODS is read from the registry on every access (PEP 562).
    if name == "LIKELIHOODS":
        return likelihood_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
