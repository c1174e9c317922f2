"""The names of the losses and their in-batch mining (no torch: the command line and the
training config read them without loading the losses)."""

from __future__ import annotations

#: Names accepted by :class:`~opticsfree.losses.criterion.Criterion` (``--loss``).
LOSSES: tuple[str, ...] = ("triplet", "quadruplet", "quadruplet-chen", "ce", "ce+triplet")

#: Mining strategies accepted by each metric loss (the first is the default).
MINING: dict[str, tuple[str, ...]] = {
    "triplet": ("all", "semihard", "hard"),
    "ce+triplet": ("all", "semihard", "hard"),
    "quadruplet": ("all", "hard"),
    "quadruplet-chen": ("hard", "all"),
    "ce": ("none",),
}


def default_mining(loss: str) -> str:
    """The default in-batch mining of ``loss``."""
    return MINING[loss][0]
