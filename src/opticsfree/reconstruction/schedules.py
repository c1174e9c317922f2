"""Learning-rate schedule: constant, then linear decay (the CycleGAN schedule).

For epoch :math:`e` (0-based) of :math:`E` epochs with decay starting at epoch :math:`s`:

.. math::

    \\mathrm{lr}(e) = \\mathrm{lr}_0 \\cdot \\begin{cases}
        1 & e < s \\\\
        1 - \\dfrac{e - s + 1}{E - s + 1} & e \\ge s
    \\end{cases}

so the rate is :math:`\\mathrm{lr}_0` for :math:`s` epochs and then falls linearly, reaching
:math:`\\mathrm{lr}_0 / (E - s + 1)` in the last epoch (never zero). CycleGAN trains 100 constant
and 100 decaying epochs; the default here is :math:`s = \\lfloor E / 2 \\rfloor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch


@dataclass(frozen=True)
class ConstantThenLinearDecay:
    """The schedule for ``epochs`` epochs, decaying from ``decay_start`` (default ``epochs // 2``).

    Attributes:
        base_lr: the constant rate.
        epochs: total epochs ``E``.
        decay_start: first decaying epoch ``s`` (0-based); ``None`` means ``E // 2``.
    """

    base_lr: float
    epochs: int
    decay_start: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.decay_start is not None and not 0 <= self.decay_start <= self.epochs:
            raise ValueError(f"decay_start must be in 0..{self.epochs}, got {self.decay_start}")

    @property
    def start(self) -> int:
        return self.epochs // 2 if self.decay_start is None else self.decay_start

    def factor(self, epoch: int) -> float:
        """Multiplier of ``base_lr`` in 0-based ``epoch``."""
        s = self.start
        if epoch < s:
            return 1.0
        return max(0.0, 1.0 - (epoch - s + 1) / (self.epochs - s + 1))

    def lr(self, epoch: int) -> float:
        """Learning rate in 0-based ``epoch``."""
        return self.base_lr * self.factor(epoch)

    def apply(self, optimizers: torch.optim.Optimizer | Iterable[torch.optim.Optimizer], epoch: int) -> float:
        """Set the rate of every parameter group of ``optimizers`` for ``epoch``; returns it.

        A group that was created with an ``initial_lr`` different from ``base_lr`` (e.g. a
        discriminator with its own rate) is scaled by the same factor.
        """
        opts = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
        f = self.factor(epoch)
        for opt in opts:
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
                g["lr"] = g["initial_lr"] * f
        return self.base_lr * f
