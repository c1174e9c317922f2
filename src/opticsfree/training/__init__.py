"""Training of lensless/original embedding models (deep metric learning).

Public API::

    train(config, out, resume=False) -> summary dict
    list_checkpoints(run) -> list[int]
    load_trained(run, epoch=None) -> TrainedModel
"""

from opticsfree.training.checkpoint import TrainedModel, list_checkpoints, load_trained
from opticsfree.training.config import TrainConfig
from opticsfree.training.trainer import TrainingError, train

__all__ = ["train", "TrainConfig", "TrainedModel", "TrainingError", "list_checkpoints", "load_trained"]
