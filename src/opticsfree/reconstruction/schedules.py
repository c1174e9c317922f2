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

The schedule is PyTorch's: ``ConstantLR`` (factor 1) for the first :math:`s` epochs, then
``LinearLR`` from :math:`(E - s) / (E - s + 1)` down to :math:`1 / (E - s + 1)`, joined by
``SequentialLR``; it is stepped once per epoch. Every parameter group keeps its own base rate
(e.g. a discriminator with its own rate) and is scaled by the same factor.
"""

from __future__ import annotations

import warnings

import torch
from torch.optim import lr_scheduler


def decay_start(epochs: int, start: int | None = None) -> int:
    """The first decaying epoch ``s`` (0-based): ``start``, or ``epochs // 2`` when None.

    Raises:
        ValueError: ``epochs < 1`` or ``start`` outside ``0..epochs``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if start is not None and not 0 <= start <= epochs:
        raise ValueError(f"decay_start must be in 0..{epochs} (the epochs), got {start}")
    return epochs // 2 if start is None else start


def constant_then_linear_decay(optimizer: torch.optim.Optimizer, epochs: int, start: int | None = None,
                               epoch: int = 0) -> lr_scheduler.LRScheduler:
    """The schedule of ``optimizer`` over ``epochs`` epochs, decaying from epoch ``start``.

    Args:
        optimizer: its groups' rates are the base rates :math:`\\mathrm{lr}_0` (a group that
            already has an ``initial_lr``, e.g. one restored from a checkpoint, restarts from
            that).
        epochs: total epochs :math:`E`.
        start: first decaying epoch :math:`s` (0-based); None means :math:`E // 2`.
        epoch: the 0-based epoch to be at (resume): the schedule is stepped that many times.

    Returns:
        the scheduler, with every group's ``lr`` set for ``epoch``; call ``step()`` after each
        epoch.
    """
    s = decay_start(epochs, start)
    for g in optimizer.param_groups:
        g["lr"] = g.setdefault("initial_lr", g["lr"])
    scheds: list[lr_scheduler.LRScheduler] = []
    if s > 0:
        scheds.append(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=s))
    if s < epochs:
        n = epochs - s + 1
        scheds.append(lr_scheduler.LinearLR(optimizer, start_factor=(n - 1) / n, end_factor=1 / n,
                                            total_iters=max(1, n - 2)))
    sched = scheds[0] if len(scheds) == 1 else lr_scheduler.SequentialLR(optimizer, scheds, milestones=[s])
    with warnings.catch_warnings():  # stepping without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epoch):
            sched.step()
    return sched
