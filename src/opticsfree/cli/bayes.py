"""``opticsfree bayes``: priors, posteriors, KL divergences, calibration and multi-frame fusion."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from opticsfree.cli.common import RERUN_TO_REDO, choices, command, print_json

#: ``--split`` and ``--likelihood``: opticsfree.bayes.report.SPLITS and "auto" +
#: opticsfree.bayes.likelihood.LIKELIHOODS (written out so that the command line starts without
#: loading torch; a test checks that they agree).
Split = choices(("test", "val", "train"))
Likelihood = choices(("auto", "metric", "ce"))


@command("bayes", resume_hint=RERUN_TO_REDO)
def bayes(
    run: Path = typer.Argument(..., metavar="RUN", help="RUN directory of a trained model."),
    checkpoint: Optional[int] = typer.Option(None, "--checkpoint",
                                             help="Epoch to load (default: the last)."),
    prior: str = typer.Option("uniform", "--prior",
                              help="uniform, train (training class frequencies) or a JSON file "
                                   "of class -> probability."),
    frames: Optional[int] = typer.Option(None, "--frames",
                                         help="Fuse the first K frames of each scene "
                                              "(default: all)."),
    split: Split = typer.Option("test", "--split", help="Split to evaluate."),
    likelihood: Likelihood = typer.Option("auto", "--likelihood",
                                          help="metric (prototype distances), ce (classifier head), "
                                               "or auto (ce for runs trained with a head)."),
    captures: Optional[Path] = typer.Option(
        None, "--captures",
        help="Evaluate --split of another capture set with the same classes (e.g. a multi-frame "
             "set from `simulate --frames K`); prototypes, prior and temperature stay the run's own."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Bayesian inference: prior x likelihood -> posterior, KL (nats), NLL, Brier, ECE.

    Writes RUN/bayes_<split>.json (with --captures: RUN/bayes_<split>-<set name>.json) and
    figures under RUN/figures/.
    """
    from opticsfree.bayes.report import bayes_run, summary_lines

    from opticsfree.utils.threads import single_threaded_openmp

    with single_threaded_openmp():  # torch + scikit-learn in one process
        result = bayes_run(run, checkpoint=checkpoint, prior=prior, frames=frames, split=split,
                           likelihood=likelihood, captures=captures)
    if json_out:
        slim = {k: v for k, v in result.items()
                if k not in ("reliability", "reliability_before", "examples")}
        print_json(slim)
    else:
        for line in summary_lines(result):
            typer.echo(line)
