"""Training of lensless/original embedding models (deep metric learning).

Public API::

    train(config, out, resume=False) -> summary dict
    list_checkpoints(run) -> list[int]
    load_trained(run, epoch=None) -> TrainedModel

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.training.config` (read by
the command line for its choices and defaults) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

if TYPE_CHECKING:
    from opticsfree.training.checkpoint import TrainedModel, list_checkpoints, load_trained
    from opticsfree.training.config import TrainConfig
    from opticsfree.training.trainer import TrainingError, train

__all__ = ["train", "TrainConfig", "TrainedModel", "TrainingError", "list_checkpoints", "load_trained"]


__getattr__ = lazy_getattr(__name__, __all__, ('checkpoint', 'config', 'trainer'))
