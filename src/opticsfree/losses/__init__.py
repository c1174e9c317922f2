"""Metric-learning losses: the seed's quadruplet loss, Chen's quadruplet loss, the training
criterion of every ``--loss`` (triplet from pytorch-metric-learning)."""

from opticsfree.losses.criterion import LOSSES, MINING, Criterion, default_mining
from opticsfree.losses.quadruplet_chen_loss import ChenQuadrupletLoss, ChenQuadrupletMiner
from opticsfree.losses.quadruplet_loss import QuadrupletLoss, QuadrupletMiner

__all__ = ["LOSSES", "MINING", "Criterion", "default_mining", "QuadrupletLoss", "QuadrupletMiner",
           "ChenQuadrupletLoss", "ChenQuadrupletMiner"]
