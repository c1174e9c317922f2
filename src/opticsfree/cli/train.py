"""``opticsfree train``: train a lensless/original embedding model (deep metric learning).

Several processes (DDP): ``torchrun --standalone --nproc_per_node N -m opticsfree.cli.main train
CAPTURES --loss LOSS --out RUN ...``; the trainer joins the torchrun process group itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from opticsfree.cli.common import (BATCH, COUNT, EPOCHS, FRACTION, LIMIT, POSITIVE, RERUN_WITH_RESUME, SEED,
                                   SIZE, THREADS, WORKERS, Device, choices, command, field_default,
                                   parse_key_values, print_json)
from opticsfree.errors import ConfigError
from opticsfree.losses.names import LOSSES, MINING
from opticsfree.models.names import BACKBONES, DEFAULT_WIDTHS
from opticsfree.training.config import SEED_EPOCHS, TrainConfig
from opticsfree.training.recipes import DEFAULT_RECIPE, recipes_help

Loss = choices(LOSSES)
Backbone = choices(BACKBONES)
Sampling = TrainConfig.model_fields["sampling"].annotation
Mining = choices(dict.fromkeys(m for ms in MINING.values() for m in ms))


def _d(field: str) -> str:
    """``show_default`` text: TrainConfig's default of ``field``."""
    return field_default(TrainConfig, field)


def _lr_defaults() -> str:
    """The derived peak learning rates of TrainConfig (``lr`` None) per optimizer."""
    opts = TrainConfig.model_fields["optimizer"].annotation.__args__
    return ", ".join(f"{TrainConfig(captures='.', loss='ce', optimizer=o).resolved_lr():g} {o}" for o in opts)


@command("train", resume_hint=RERUN_WITH_RESUME)
def train_command(
    captures: Path = typer.Argument(..., help="capture-set directory (with a train split)"),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="training loss",
                                        show_default="the recipe's (best: ce)"),
    recipe: str = typer.Option(DEFAULT_RECIPE, "--recipe", metavar="NAME|FILE.toml",
                               help=f"the settings to start from (options given here win): {recipes_help()}; "
                                    "or a recipe file (docs/metric-learning.md, \"Recipes\")"),
    out: Path = typer.Option(..., "--out", help="run directory to write (RUN)"),
    backbone: Optional[Backbone] = typer.Option(None, "--backbone", help="embedding backbone",
                                                show_default=_d("backbone")),
    epochs: Optional[int] = typer.Option(None, "--epochs", **EPOCHS, help="training epochs", show_default=_d("epochs")),
    checkpoints: Optional[str] = typer.Option(
        None, "--checkpoints", help="comma-separated checkpoint epochs",
        show_default=f"{','.join(map(str, SEED_EPOCHS))} below --epochs, and the last"),
    sampling: Optional[Sampling] = typer.Option(
        None, "--sampling", help="online (class-balanced batches, in-batch mining) | tuples (the seed's fixed rows)",
        show_default=_d("sampling")),
    mining: Optional[Mining] = typer.Option(None, "--mining", help="in-batch mining (the loss offers a subset)",
                                            show_default="the loss's default"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", **FRACTION, help="train scenes held out for validation",
                                                 show_default=_d("val_fraction")),
    device: Optional[Device] = typer.Option(None, "--device", help="device", show_default=_d("device")),
    seed: Optional[int] = typer.Option(None, "--seed", **SEED, help="random seed", show_default=_d("seed")),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last finished epoch"),
    shared: bool = typer.Option(False, "--shared", help="one encoder for lensless and original images",
                                show_default=_d("shared")),
    size: Optional[int] = typer.Option(None, "--size", **SIZE, help="resize images to N x N", show_default="as stored"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", **BATCH, help="global batch size",
                                             show_default=_d("batch_size")),
    lr: Optional[float] = typer.Option(None, "--lr", **POSITIVE, help="peak learning rate", show_default=_lr_defaults()),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="use at most N training scenes (class-stratified)",
                                        show_default="all"),
    width: Optional[int] = typer.Option(None, "--width", **COUNT, help="backbone width",
                                        show_default=", ".join(f"{w} {n}" for n, w in DEFAULT_WIDTHS.items())),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast",
                                       show_default="on where the CPU/GPU has native bf16"),
    workers: Optional[int] = typer.Option(None, "--loader-workers", **WORKERS,
                                          help="processes that decode the tuples of --sampling tuples ahead of "
                                               "training (0 or 1: the training process; config field workers)",
                                          show_default=_d("workers")),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS, help="torch CPU threads", show_default="torch default"),
    teacher: Optional[Path] = typer.Option(None, "--teacher", metavar="RUN",
                                           help="teacher-student: a finished run that sees each training "
                                                "scene (e.g. trained on `lens` captures) and guides this one "
                                                "(soft targets; weights and temperature: --set teacher_kd_weight=, "
                                                "teacher_temperature=, teacher_feature_weight=)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress on stderr (no bar, no line per epoch)"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="any other config field; VALUE is parsed as JSON when it parses, "
                                        "else taken as a string; repeatable; see docs/metric-learning.md"),
) -> None:
    """Train an embedding model on a capture set, starting from a recipe (default: the best
    measured settings); writes RUN/config.json, metrics.jsonl and checkpoints/epoch_NNN.pt, and
    prints a JSON summary."""
    from opticsfree.training import train
    from opticsfree.training.recipes import has_simulated_camera, load_recipe, merge

    rec = load_recipe(recipe)
    loss, recipe_fields, dropped = rec.fields(loss, simulated=has_simulated_camera(captures))
    speak = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 prints
    if dropped and speak:
        typer.echo(f"warning: {captures} holds real captures: the recipe's {', '.join(dropped)} left out "
                   "(scene augmentation re-captures scenes through a simulated camera)", err=True)
    fields: dict[str, Any] = {"captures": str(captures), "loss": loss}
    given = {"backbone": backbone, "epochs": epochs, "checkpoints": checkpoints, "sampling": sampling,
             "mining": mining, "val_fraction": val_fraction, "device": device, "seed": seed,
             "size": size, "batch_size": batch_size, "lr": lr, "limit": limit, "width": width,
             "amp": amp, "workers": workers, "threads": threads,
             "teacher": None if teacher is None else str(teacher)}
    fields.update({k: v for k, v in given.items() if v is not None})
    if shared:
        fields["shared"] = True
    extra = parse_key_values(set_, "--set")
    clash = sorted(set(extra) & ({k for k, v in given.items() if v is not None} | {"captures", "loss"}
                                 | ({"shared"} if shared else set())))
    if clash:
        flag = {"workers": "loader-workers"}.get(clash[0], clash[0].replace('_', '-'))
        raise ConfigError(f"--set {clash[0]}: use the --{flag} option instead")
    fields.update(extra)
    fields, ruled_out = merge(recipe_fields, fields)
    if ruled_out and speak:
        typer.echo(f"note: the recipe's {', '.join(ruled_out)} left out (they do not apply with the options given)",
                   err=True)
    cfg = TrainConfig.from_dict(fields, source=f"train options (recipe {rec.name})")
    summary = train(cfg, out, resume=resume, show_progress=not quiet)
    if speak:
        print_json({**summary, "recipe": {"name": rec.name, "source": rec.source, "loss": loss}})
