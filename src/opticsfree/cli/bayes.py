"""``opticsfree bayes``: priors, posteriors, KL divergences, calibration and multi-frame fusion."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from opticsfree.bayes.names import REGISTRY as LIKELIHOOD_REGISTRY, likelihood_names
from opticsfree.cli.common import (FRAMES, RERUN_TO_REDO, choices, command, other_captures_option,
                                   print_json)

#: ``--split``: opticsfree.bayes.model.SPLITS (written out so that the command line starts without
#: loading NumPy; a test checks that they agree).
Split = choices(("test", "val", "train"))
#: ``--likelihood``: "auto" and the likelihoods registered when this module is imported
#: (opticsfree.bayes.names, which loads neither NumPy nor torch).
Likelihood = choices(("auto", *likelihood_names()))
_LIKELIHOOD_HELP = ", ".join(f"{n} ({s.description})" for n, s in LIKELIHOOD_REGISTRY.items())


@command("bayes", resume_hint=RERUN_TO_REDO)
def bayes(
    run: Path = typer.Argument(..., metavar="RUN", help="RUN directory of a trained model."),
    checkpoint: str = typer.Option("last", "--checkpoint",
                                   help="best (highest validation accuracy), last or an epoch number."),
    prior: str = typer.Option("uniform", "--prior",
                              help="uniform, train (training class frequencies) or a JSON file "
                                   "of class -> probability."),
    frames: Optional[int] = typer.Option(None, "--frames", **FRAMES,
                                         help="Fuse the first K frames of each scene "
                                              "(default: all)."),
    split: Split = typer.Option("test", "--split", help="Split to evaluate."),
    likelihood: Likelihood = typer.Option("auto", "--likelihood",
                                          help=f"{_LIKELIHOOD_HELP}, or auto (ce for runs trained with a head)."),
    captures: Optional[Path] = other_captures_option(
        "prototypes, prior and temperature stay the run's own."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN)."),
) -> None:
    """Bayesian inference: prior x likelihood -> posterior, KL (nats), NLL, Brier, ECE.

    Writes OUT/bayes_<split>.json (with --captures: OUT/bayes_<split>-<set name>.json) and
    figures under OUT/figures/ (OUT: RUN unless --out).
    """
    from opticsfree.bayes.report import bayes_analysis, summary_document
    from opticsfree.training import load_trained
    from opticsfree.utils.document import render_terminal
    from opticsfree.utils.io import check_out_dir
    from opticsfree.utils.threads import single_threaded_openmp

    out = run if out is None else check_out_dir(out, "a folder for the report")
    from opticsfree.inference.adapter import resolve_checkpoint

    last = checkpoint.strip().lower() == "last"  # load_trained's default, with its own errors
    model = load_trained(run, None if last else resolve_checkpoint(run, checkpoint))
    with single_threaded_openmp():  # torch + scikit-learn in one process
        result = bayes_analysis(model, out, prior=prior, frames=frames, split=split,
                                likelihood=likelihood, captures=captures, run=run)
    if json_out:
        print_json(result.to_json(detail=False))
    else:
        render_terminal(summary_document(result))
