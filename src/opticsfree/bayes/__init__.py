"""Bayesian inference on top of a trained model: priors, likelihoods, posteriors, KL
divergences, calibration and multi-frame evidence fusion.

See docs/bayes.md for the equations and conventions (natural logs: all divergences in nats).

Layers: the math (``priors``, ``likelihood``, ``posterior``, ``divergence``, ``calibration``);
the model-free analysis of scores (``analysis``: :func:`analyse` -> :class:`Analysis`); the
analysis of a loaded model (``model``: :func:`analyse_model` -> :class:`BayesResult`); the
files and summary (``report``: :func:`write_report`, :func:`bayes_analysis`). The likelihood
names are registered in ``names`` (no NumPy: the command line reads them).

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.bayes.names` imports
without NumPy, SciPy or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

if TYPE_CHECKING:
    from opticsfree.bayes.analysis import Analysis, FrameGroups, analyse, group_frames
    from opticsfree.bayes.calibration import brier, calibration_metrics, ece, nll, reliability
    from opticsfree.bayes.divergence import (
        kl,
        kl_label_meanposterior,
        kl_posterior_prior,
        kl_posterior_prior_per_sample,
        kl_prior_posterior,
    )
    from opticsfree.bayes.likelihood import (
        TemperatureFit,
        ce_scores,
        choose_likelihood,
        fit_temperature,
        log_likelihood,
        metric_scores,
        squared_distances,
    )
    from opticsfree.bayes.model import BayesResult, analyse_model
    from opticsfree.bayes.posterior import (
        batch_log_posterior,
        log_posterior,
        log_prior_of,
        posterior,
        sequential_log_posteriors,
    )
    from opticsfree.bayes.priors import load_prior_file, resolve_prior, train_prior, uniform_prior
    from opticsfree.bayes.report import bayes_analysis, write_report

__all__ = [
    "Analysis", "BayesResult", "FrameGroups", "TemperatureFit", "analyse", "analyse_model",
    "batch_log_posterior", "bayes_analysis", "brier", "calibration_metrics", "ce_scores",
    "choose_likelihood", "ece", "fit_temperature", "group_frames", "kl",
    "kl_label_meanposterior", "kl_posterior_prior", "kl_posterior_prior_per_sample",
    "kl_prior_posterior", "load_prior_file", "log_likelihood", "log_posterior", "log_prior_of",
    "metric_scores", "nll", "posterior", "reliability", "resolve_prior",
    "sequential_log_posteriors", "squared_distances", "train_prior", "uniform_prior",
    "write_report",
]

__getattr__ = lazy_getattr(__name__, __all__, ("analysis", "calibration", "divergence", "likelihood",
                                               "model", "posterior", "priors", "report"))
