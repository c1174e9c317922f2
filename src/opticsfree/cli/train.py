"""``opticsfree train``: train a lensless/original embedding model (deep metric learning).

Several processes (DDP): ``torchrun --standalone --nproc_per_node N -m opticsfree.cli.main train
CAPTURES --loss LOSS --out RUN ...``; the trainer joins the torchrun process group itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from opticsfree.cli.common import RERUN_WITH_RESUME, command, print_json
from opticsfree.errors import ConfigError


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set margin=0.3)")
        k, v = item.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out


@command("train", resume_hint=RERUN_WITH_RESUME)
def train_command(
    captures: Path = typer.Argument(..., help="capture-set directory (with a train split)"),
    loss: str = typer.Option(..., "--loss", help="triplet | quadruplet | quadruplet-chen | ce | ce+triplet"),
    out: Path = typer.Option(..., "--out", help="run directory to write (RUN)"),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="cnn4 | resnet8 | resnet14 | resnet20 | resnet32 [cnn4]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training epochs [50]"),
    checkpoints: Optional[str] = typer.Option(None, "--checkpoints", help="comma-separated checkpoint epochs [15,30,50]"),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="online (class-balanced batches, in-batch mining) | tuples (the seed's fixed rows) [online]"),
    mining: Optional[str] = typer.Option(None, "--mining", help="all | semihard | hard [loss default]"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="train scenes held out for validation [0.1]"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda [cpu]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed [0]"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last finished epoch"),
    shared: bool = typer.Option(False, "--shared", help="one encoder for lensless and original images"),
    size: Optional[int] = typer.Option(None, "--size", help="resize images to N x N [as stored]"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="global batch size [256]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate [2e-3 adamw, 0.1 sgd]"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use at most N training scenes (class-stratified)"),
    width: Optional[int] = typer.Option(None, "--width", help="backbone width [16 resnets, 32 cnn4]"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast [on where the CPU/GPU has native bf16]"),
    workers: Optional[int] = typer.Option(None, "--workers", help="data-loader processes for --sampling tuples [0]"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads [torch default]"),
    set_: List[str] = typer.Option([], "--set", help="any other config field, KEY=VALUE (JSON value), repeatable; see docs/metric-learning.md"),
) -> None:
    """Train an embedding model on a capture set; writes RUN/config.json, metrics.jsonl and
    checkpoints/epoch_NNN.pt, and prints a JSON summary."""
    from opticsfree.training import train
    from opticsfree.training.config import TrainConfig

    fields: dict[str, Any] = {"captures": str(captures), "loss": loss}
    given = {"backbone": backbone, "epochs": epochs, "checkpoints": checkpoints, "sampling": sampling,
             "mining": mining, "val_fraction": val_fraction, "device": device, "seed": seed,
             "size": size, "batch_size": batch_size, "lr": lr, "limit": limit, "width": width,
             "amp": amp, "workers": workers, "threads": threads}
    fields.update({k: v for k, v in given.items() if v is not None})
    if shared:
        fields["shared"] = True
    extra = _parse_set(set_)
    clash = sorted(set(extra) & (set(fields) | {"captures", "loss"}))
    if clash:
        raise ConfigError(f"--set {clash[0]}: use the --{clash[0].replace('_', '-')} option instead")
    fields.update(extra)
    cfg = TrainConfig.from_dict(fields, source="train options")
    summary = train(cfg, out, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 prints
        print_json(summary)
