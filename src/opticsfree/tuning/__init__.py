"""Hyperparameter search over training settings or reconstruction options (``opticsfree tune``),
with Optuna.

:func:`tune` runs trials of ordinary training runs (``DIR/trials/NNNN``) whose settings a
search space draws, scores each on the validation hold-out (never the test split), prunes
weak trials early and writes the best settings as a recipe file for ``train --recipe FILE``.
Optuna is an optional extra (``pip install 'opticsfree[scale]'``), imported only here.
"""

from opticsfree.tuning.search import SearchSpace, Target, TuneResult, load_space, tune

__all__ = ["SearchSpace", "Target", "TuneResult", "load_space", "tune"]
