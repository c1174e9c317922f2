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
def display_estimates(model: EmbeddingModel, lensless: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The front end's display estimates of every capture, computed once.

    A frozen front end (``front_end_lr_scale = 0``) maps each capture to the same image at
    every epoch; the trainer computes them here once and feeds them to the model with
    ``estimated=True``, which saves the affine map's cost (about a quarter of a ``wvgg``
    width-16 epoch on CIFAR-sized captures). Rows are computed in chunks of at least 17, where
    the matrix product gives each row bit for bit what a training batch gives it.

    Shape:
        (N, lensless_channels, H, W) uint8 -> float32 (N, original_channels, H, W).
    """
    if model.front_end is None:
        raise ValueError("this model has no front end")
    fe = model.front_end
    device = next(fe.parameters()).device
    out = torch.empty(len(lensless), fe.out_channels, fe.size, fe.size)
    for i in range(0, len(lensless), chunk):
        out[i:i + chunk] = model.display_estimate(lensless[i:i + chunk].to(device)).cpu()
    return out


@torch.no_grad()
def estimate_stats(model: EmbeddingModel, lensless: torch.Tensor,
                   estimates: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the front end's display estimates of ``lensless`` (or of
    ``estimates``, those estimates computed by :func:`display_estimates`)."""
    if estimates is not None:
        return channel_stats(estimates, transform=lambda t: t)
    return channel_stats(lensless, transform=model.display_estimate)


@dataclass
class Initialisation:
    """What :func:`initialise_model` did.

    Attributes:
        front_end: the front end's fit (None without a front end).
        estimates: the front end's display estimates of the training captures, float32
            (N, C', H, W), when asked for with ``keep_estimates`` (None otherwise).
    """

    front_end: FrontEndFit | None
    estimates: torch.Tensor | None = None


def initialise_model(model: EmbeddingModel, train: CaptureSplit, val: CaptureSplit,
                     seed: int, keep_estimates: bool = False) -> Initialisation:
    """Front end, input standardisation and backbone initialisation from the training data.

    Args:
        model: a freshly built model (on the CPU).
        train, val: the run's training and validation rows.
        seed: the run's seed.
        keep_estimates: return the front end's display estimates of ``train.lensless`` (a
            model with a front end only), for a trainer that keeps the front end frozen.

    Returns:
        An :class:`Initialisation`.
    """
    fit = None
    est = None
    if keep_estimates and model.front_end is None:
        raise ValueError("keep_estimates needs a model with a front end")
    if model.front_end is not None:
        fit = fit_front_end(model, train, val, seed)
        est = display_estimates(model, train.lensless)
        model.set_input_stats("lensless", *estimate_stats(model, train.lensless, est))
    else:
        model.set_input_stats("lensless", *channel_stats(train.lensless))
    model.set_input_stats("original", *channel_stats(train.original))
    g = torch.Generator().manual_seed(derive_seed("backbone-init", seed))
    rows = torch.randperm(len(train), generator=g)[:BACKBONE_INIT_ROWS]
    model.init_from_data(train.lensless[rows], train.original[rows], seed=seed)
    return Initialisation(fit, est if keep_estimates else None)


__all__ = ["FrontEndFit", "Initialisation", "fit_front_end", "display_estimates", "estimate_stats",
           "initialise_model"]
