"""Training of lensless/original embedding models (deep metric learning).

Public API::

    train(config, out, resume=False) -> summary dict
    list_checkpoints(run) -> list[int]
    load_trained(run, epoch=None) -> TrainedModel

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.training.config` (read by
the command line for its choices and defaults) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opticsfree.training.checkpoint import TrainedModel, list_checkpoints, load_trained
    from opticsfree.training.config import TrainConfig
    from opticsfree.training.trainer import TrainingError, train

__all__ = ["train", "TrainConfig", "TrainedModel", "TrainingError", "list_checkpoints", "load_trained"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from opticsfree.training import checkpoint, config, trainer

    for module in (checkpoint, config, trainer):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
