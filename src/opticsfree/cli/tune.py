"""``opticsfree tune``: search training settings on the validation hold-out (Optuna)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from opticsfree.cli.common import (COUNT, SEED, Executor, address_option, choices, command, executor_option,
                                   parse_key_values, print_json)
from opticsfree.losses.names import LOSSES
from opticsfree.training.recipes import DEFAULT_RECIPE

Loss = choices(LOSSES)


@command("tune", resume_hint="rerun the same command to continue the search")
def tune_command(
    captures: Path = typer.Argument(..., metavar="SET", help="capture set (its train split; trials are "
                                                              "scored on the validation hold-out)"),
    space: Path = typer.Option(..., "--space", metavar="SPACE.toml",
                               help="the fields to search, one table each (docs/metric-learning.md, "
                                    "\"Searching settings\")"),
    trials: int = typer.Option(..., "--trials", **COUNT, help="finished trials wanted (earlier ones count)"),
    out: Path = typer.Option(..., "--out", help="search directory: trials/NNNN runs, study.db, "
                                                "trials.csv, best.toml, importance.png"),
    recipe: str = typer.Option(DEFAULT_RECIPE, "--recipe", metavar="NAME|FILE.toml",
                               help="the settings every trial starts from"),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="training loss", show_default="the recipe's"),
    seed: int = typer.Option(0, "--seed", **SEED, help="random seed of the sampler"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="a fixed training setting for every trial (e.g. epochs=5); "
                                        "repeatable"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    executor: Executor = executor_option("trial"),
    address: Optional[str] = address_option(),
) -> None:
    """Search training settings with Optuna (TPE sampling, median pruning on the per-epoch
    validation accuracy; the test split is never read) and write the best as a recipe for
    `train --recipe OUT/best.toml`. Needs the optional extra: pip install 'opticsfree[scale]'."""
    from opticsfree.tuning import load_space, tune
    from opticsfree.utils.io import check_out_dir
    from opticsfree.utils.progress import progress_line

    check_out_dir(out, "a folder for the search")
    sp = load_space(space)
    result = tune(captures, sp, out, trials, recipe=recipe, loss=loss, fields=parse_key_values(set_, "--set"),
                  seed=seed, executor=executor, address=address, on_trial=lambda n, state, value: progress_line(
                      f"trial {n}: {state}" + ("" if value is None else f", validation {100 * value:.2f}%")))
    if as_json:
        print_json(result.to_json())
        return
    typer.echo(f"best: trial {result.best_trial}, validation {100 * result.best_value:.2f}% with "
               + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    typer.echo(f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed; "
               f"wrote {result.recipe} (train --recipe {result.recipe}) and {result.history}")
