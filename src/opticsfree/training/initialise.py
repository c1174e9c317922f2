"""Data-dependent initialisation of a model before its first step.

In order: the lensless front end (when the model has one) is set to the ridge estimator from
training captures to their originals, its strength chosen on the run's validation rows (the
estimator of ``camera info``: the camera's regularised inverse, including what the transfer
matrix alone does not model such as auto-exposure, gamma and sensor offsets); each domain's
input standardisation is set from the training images as the encoder sees them; backbones with
a data-dependent layer (``wvgg``'s patch whitening) are set up on a sample of those inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from opticsfree.captures.linear import fit_inverse
from opticsfree.captures.loader import CaptureSplit
from opticsfree.models.embedding import EmbeddingModel
from opticsfree.training.data import channel_stats
from opticsfree.utils.seeding import derive_seed

#: Training rows used to fit the front end (the ridge needs far fewer than 45,000).
FRONT_END_ROWS = 20_000
#: Validation rows that choose the ridge strength.
FRONT_END_VAL_ROWS = 5_000
#: Rows of each domain that set a backbone's data-dependent layer.
BACKBONE_INIT_ROWS = 5_000


@dataclass
class FrontEndFit:
    """How the front end was initialised.

    Attributes:
        lambda_relative: the chosen ridge strength (times the mean Gram eigenvalue).
        val_relative_error: validation error of the estimate, relative to the originals' spread.
        n_train, n_val: rows used.
    """

    lambda_relative: float
    val_relative_error: float
    n_train: int
    n_val: int

    def to_json(self) -> dict[str, float | int]:
        return {"lambda_relative": self.lambda_relative, "val_relative_error": self.val_relative_error,
                "n_train": self.n_train, "n_val": self.n_val}


def fit_front_end(model: EmbeddingModel, train: CaptureSplit, val: CaptureSplit, seed: int,
                  max_rows: int = FRONT_END_ROWS) -> FrontEndFit:
    """Set ``model``'s front end to the ridge estimator from captures to originals
    (:func:`opticsfree.captures.linear.fit_inverse`).

    Args:
        model: a model built with ``front_end=True``.
        train: training rows (at most ``max_rows`` of them, a seeded sample, fit the estimator).
        val: validation rows that choose its strength (when empty, a tenth of the sample).
        seed: the run's seed.

    Returns:
        The fit's :class:`FrontEndFit`.
    """
    a, c, report = fit_inverse(train.lensless, train.original, val.lensless, val.original, seed,
                               max_rows, FRONT_END_VAL_ROWS)
    model.front_end.set_affine(a, c)
    return FrontEndFit(float(report["lambda_relative"]), float(report["val_relative_error"]),
                       int(report["n_train"]), int(report["n_val"]))


@torch.no_grad()
def estimate_stats(model: EmbeddingModel, lensless: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the front end's display estimates of ``lensless``."""
    return channel_stats(lensless, transform=model.display_estimate)


def initialise_model(model: EmbeddingModel, train: CaptureSplit, val: CaptureSplit,
                     seed: int) -> FrontEndFit | None:
    """Front end, input standardisation and backbone initialisation from the training data.

    Args:
        model: a freshly built model (on the CPU).
        train, val: the run's training and validation rows.
        seed: the run's seed.

    Returns:
        The front end's fit, or None when the model has none.
    """
    fit = None
    if model.front_end is not None:
        fit = fit_front_end(model, train, val, seed)
        model.set_input_stats("lensless", *estimate_stats(model, train.lensless))
    else:
        model.set_input_stats("lensless", *channel_stats(train.lensless))
    model.set_input_stats("original", *channel_stats(train.original))
    g = torch.Generator().manual_seed(derive_seed("backbone-init", seed))
    rows = torch.randperm(len(train), generator=g)[:BACKBONE_INIT_ROWS]
    model.init_from_data(train.lensless[rows], train.original[rows], seed=seed)
    return fit


__all__ = ["FrontEndFit", "fit_front_end", "estimate_stats", "initialise_model"]
