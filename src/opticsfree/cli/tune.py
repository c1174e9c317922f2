"""``opticsfree tune``: search training settings on the validation hold-out (Optuna)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from opticsfree.cli.common import (COUNT, SEED, Executor, address_option, choices, command, executor_option,
                                   parse_key_values, print_json)
from opticsfree.losses.names import LOSSES
from opticsfree.reconstruction.names import method_names
from opticsfree.tuning.search import RECON_METRICS

Loss = choices(LOSSES)
Method = choices(method_names())
Metric = choices(RECON_METRICS)


@command("tune", resume_hint="rerun the same command to continue the search")
def tune_command(
    captures: Path = typer.Argument(..., metavar="SET", help="capture set (its train split; trials are "
                                                              "scored on the validation hold-out)"),
    space: Path = typer.Option(..., "--space", metavar="SPACE.toml",
                               help="the fields to search, one table each (docs/metric-learning.md, "
                                    "\"Searching settings\")"),
    reconstruct: Optional[Method] = typer.Option(None, "--reconstruct",
                                                 help="search a reconstruction method's options "
                                                      "(reconstruct train --set) instead of training settings"),
    metric: Optional[Metric] = typer.Option(None, "--metric",
                                            help="--reconstruct only: the validation score to maximise",
                                            show_default=RECON_METRICS[0]),
    trials: int = typer.Option(..., "--trials", **COUNT, help="finished trials wanted (earlier ones count)"),
    out: Path = typer.Option(..., "--out", help="search directory: trials/NNNN runs, study.db, "
                                                "trials.csv, best.toml, importance.png"),
    recipe: Optional[str] = typer.Option(None, "--recipe", metavar="NAME|FILE.toml",
                                         help="the settings every trial starts from (a training recipe, or "
                                              "with --reconstruct a reconstruction recipe)",
                                         show_default="best"),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="training loss", show_default="the recipe's"),
    seed: int = typer.Option(0, "--seed", **SEED, help="random seed of the sampler"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="a fixed training setting (with --reconstruct: method option) "
                                        "for every trial (e.g. epochs=5); repeatable"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    executor: Executor = executor_option("trial"),
    address: Optional[str] = address_option(),
) -> None:
    """Search training settings (or, with --reconstruct, a reconstruction method's options) with
    Optuna (TPE sampling, median pruning on the per-epoch validation score; the test split is
    never read) and write the best as a recipe for `train --recipe OUT/best.toml` (or
    `reconstruct train --recipe OUT/best.toml`). Needs the optional extra: pip install
    'opticsfree[scale]'."""
    from opticsfree.tuning import Target, load_space, tune
    from opticsfree.utils.io import check_out_dir
    from opticsfree.utils.progress import progress_line

    target = Target(reconstruct, metric or (RECON_METRICS[0] if reconstruct else "accuracy"))
    check_out_dir(out, "a folder for the search")
    sp = load_space(space, target)

    def shown(value: float) -> str:  # accuracy in %, PSNR in dB, SSIM as is
        return {"val_accuracy": f"{100 * value:.2f}%", "val_psnr": f"PSNR {value:.2f} dB",
                "val_ssim": f"SSIM {value:.4f}"}[target.score]

    result = tune(captures, sp, out, trials, recipe=recipe, loss=loss, fields=parse_key_values(set_, "--set"),
                  seed=seed, executor=executor, address=address, target=target,
                  on_trial=lambda n, state, value: progress_line(
                      f"trial {n}: {state}" + ("" if value is None else f", validation {shown(value)}")))
    if as_json:
        print_json(result.to_json())
        return
    typer.echo(f"best: trial {result.best_trial}, validation {shown(result.best_value)} with "
               + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    command = "train" if reconstruct is None else "reconstruct train"
    typer.echo(f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed; "
               f"wrote {result.recipe} ({command} --recipe {result.recipe}) and {result.history}")
