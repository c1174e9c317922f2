"""CLI: train a reconstruction, apply it to a capture set, calibrate a camera model."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from opticsfree.cli.common import (BATCH, EPOCHS, FRACTION, GAMMA, LIMIT, POSITIVE, RERUN_TO_REDO, RERUN_WITH_RESUME,
                                   SEED, SIZE, THREADS, WORKERS, Device, app, choices, command,
                                   parse_key_values, print_json)
from opticsfree.errors import ConfigError
from opticsfree.reconstruction.recipes import DEFAULT_RECIPE, recipes_help
from opticsfree.reconstruction.names import method_names
from opticsfree.utils.io import check_out_dir, check_out_file
from opticsfree.utils.progress import console, progress

#: ``--method``: the registered reconstruction methods (opticsfree.reconstruction.names, read
#: without torch; a method registered before this module is imported is a choice too).
Method = choices(method_names())
#: ``calibrate --exposure`` (opticsfree.reconstruction.sensor_model.SensorModel's exposure modes).
Exposure = choices(("per-image", "fixed"))

reconstruct_app = typer.Typer(
    rich_markup_mode=None,
    help=f"Reconstruct images from lensless captures: train a method ({', '.join(method_names())}), "
         "average trained models into an ensemble, and apply one to a capture set.",
    no_args_is_help=True,
)
app.add_typer(reconstruct_app, name="reconstruct")


@command("train", parent=reconstruct_app, resume_hint=RERUN_WITH_RESUME)
def train(
    captures: Path = typer.Argument(..., help="capture set (its train split is used)"),
    method: Method = typer.Option(..., "--method", help="reconstruction method"),
    out: Path = typer.Option(..., "--out", help="MODEL directory to write"),
    epochs: Optional[int] = typer.Option(None, "--epochs", **EPOCHS, help="total epochs", show_default="the method's"),
    device: Device = typer.Option("cpu", "--device", help="device"),
    resume: bool = typer.Option(False, "--resume", help="continue from MODEL/checkpoints/last.pt"),
    seed: int = typer.Option(0, "--seed", **SEED, help="random seed"),
    size: Optional[int] = typer.Option(None, "--size", **SIZE, help="train at size x size (default: stored size)"),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="at most N train scenes, class-stratified"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", **BATCH, help="images per step",
                                             show_default="the method's"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", **FRACTION, help="share of train scenes held out"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast",
                                       show_default="on where the CPU/GPU has native bf16"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="memory format (default: on for cuda)"),
    camera: Optional[str] = typer.Option(None, "--camera",
                                         help="tikhonov (and cyclegan with front_end=true): camera.npz from calibrate, or a preset/TOML"),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS,
                                          help="CPU threads (default: all; 1 is faster on a busy machine)"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="method option (docs/reconstruction.md); VALUE is parsed as JSON "
                                        "when it parses, else taken as a string; repeatable"),
    recipe: str = typer.Option(DEFAULT_RECIPE, "--recipe", metavar="NAME|FILE.toml", help=recipes_help()),
) -> None:
    """Train a reconstruction method, starting from a recipe (default: the best measured
    settings); checkpoints, metrics and sample images go to MODEL."""
    check_out_dir(out, what="a MODEL directory")
    from opticsfree.reconstruction.recipes import load_recipe
    from opticsfree.reconstruction.train import best_row, list_metrics, train_reconstruction
    from opticsfree.training.recipes import has_simulated_camera

    options = parse_key_values(set_, "--set")
    own = {"epochs": epochs, "batch_size": batch_size}
    clash = sorted(k for k in options if own.get(k) is not None)
    if clash:
        raise ConfigError(f"--set {clash[0]}: given twice (also as --{clash[0].replace('_', '-')}); "
                          "give it once")
    base, dropped = load_recipe(recipe).for_method(method, simulated=has_simulated_camera(captures))
    if dropped:
        typer.echo(f"warning: {captures} holds real captures: the recipe's {', '.join(dropped)} left out "
                   "(scene augmentation re-captures scenes through a simulated camera)", err=True)
    options = {**{k: v for k, v in base.items() if own.get(k) is None}, **options}

    def report(row: dict) -> None:
        parts = [f"epoch {row['epoch']}"]
        for k in ("loss", "loss_g", "val_psnr", "val_ssim", "seconds", "images_per_s"):
            if k in row:
                parts.append(f"{k} {row[k]:.4g}")
        console.print("  ".join(parts))

    train_reconstruction(captures, method, out, epochs=epochs, device=device, resume=resume, seed=seed,
                         size=size, limit=limit, val_fraction=val_fraction, batch_size=batch_size,
                         amp=amp, channels_last=channels_last, options=options,
                         camera=camera, threads=threads, on_epoch=report)
    best = best_row(list_metrics(out))
    console.print(f"wrote model {out}" + ("" if best is None else
                  f" (best.pt: epoch {best['epoch']}, validation PSNR {best['val_psnr']:.2f} dB)"))


#: What ``--checkpoint`` of apply and ensemble names (the files of a MODEL directory).
CHECKPOINT_HELP = ("model: best (best.pt: the epoch of highest validation PSNR), last (model.pt) or "
                   "an epoch number one of the two holds")


@command("apply", parent=reconstruct_app)
def apply(
    model: Path = typer.Argument(..., help="MODEL directory from `reconstruct train`"),
    captures: Path = typer.Argument(..., help="capture set to reconstruct (all splits)"),
    out: Path = typer.Option(..., "--out", help="derived capture set to write"),
    device: Device = typer.Option("cpu", "--device", help="device"),
    batch_size: int = typer.Option(256, "--batch-size", **BATCH, help="images per forward pass"),
    workers: int = typer.Option(0, "--workers", **WORKERS, help="PNG encoding processes (0: one per CPU, 1: in this process)"),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS, help="CPU threads (default: all)"),
    checkpoint: str = typer.Option("last", "--checkpoint", help=CHECKPOINT_HELP),
) -> None:
    """Write a capture set whose lensless images are the reconstructions (originals linked)."""
    check_out_dir(out, what="a directory (the derived capture set)")
    from opticsfree.reconstruction.apply import apply_reconstruction

    with progress() as bar:
        tasks: dict[str, int] = {}

        def on_progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(f"reconstruct {split}", total=total)
            bar.update(tasks[split], completed=done)

        apply_reconstruction(model, captures, out, device=device, batch_size=batch_size, workers=workers,
                             threads=threads, on_progress=on_progress, checkpoint=checkpoint)
    console.print(f"wrote derived capture set {out}")


@command("ensemble", parent=reconstruct_app, resume_hint=RERUN_TO_REDO)
def ensemble(
    models: List[Path] = typer.Argument(..., help="two or more MODEL directories (members trained with --set member=K); one with --mirror"),
    out: Path = typer.Option(..., "--out", help="MODEL directory to write (the ensemble)"),
    device: Device = typer.Option("cpu", "--device", help="device of the validation"),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS, help="CPU threads (default: all)"),
    as_json: bool = typer.Option(False, "--json", help="print the validation report as JSON"),
    mirror: bool = typer.Option(False, "--mirror", help="also average each model's reconstruction of the "
                                "left-right mirrored capture, mirrored back (helps as far as the camera "
                                "is left-right symmetric: the report shows the mean without it)"),
    checkpoint: str = typer.Option("last", "--checkpoint", help="every member's " + CHECKPOINT_HELP),
) -> None:
    """Average trained reconstruction models into one MODEL; report each one's and the mean's
    validation PSNR / SSIM on their shared hold-out."""
    check_out_dir(out, what="a MODEL directory")
    from opticsfree.reconstruction.combine import ensemble_reconstruction

    report = ensemble_reconstruction(models, out, device=device, threads=threads, mirror=mirror,
                                     checkpoint=checkpoint)
    if as_json:
        print_json(report.to_json())
        return
    console.print(f"validation on {report.n_val} held-out scenes (per-image mean; images in [0, 1], "
                  "data range 1):")
    rows = [(f"member {k}", q) for k, q in enumerate(report.members)]
    if report.unmirrored is not None:
        rows.append(("mean without mirroring", report.unmirrored))
    rows.append(("ensemble" + (" with mirroring" if report.unmirrored is not None else ""), report.ensemble))
    for label, q in rows:
        console.print(f"  {label}: PSNR {q.val_psnr:.2f} dB  SSIM {q.val_ssim:.4f}  "
                      f"(epoch {q.epoch if q.epoch is not None else '-'}, {q.model})", soft_wrap=True)
    console.print(f"wrote model {out}")


@command("calibrate", resume_hint=RERUN_TO_REDO)
def calibrate(
    captures: Path = typer.Argument(..., help="capture set with (capture, original) train pairs"),
    out: Path = typer.Option(..., "--out", help="camera.npz to write"),
    size: Optional[int] = typer.Option(None, "--size", **SIZE, help="work at size x size"),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="at most N train scenes"),
    seed: int = typer.Option(0, "--seed", **SEED, help="seed of the validation hold-out"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", **FRACTION, help="share of train scenes held out"),
    display_gamma: Optional[float] = typer.Option(None, "--display-gamma", **GAMMA, help="default: manifest camera or 2.2"),
    output_gamma: Optional[float] = typer.Option(None, "--output-gamma", **GAMMA, help="default: manifest camera or 2.2"),
    exposure: Optional[Exposure] = typer.Option(None, "--exposure", help="camera exposure mode",
                                                show_default="the manifest camera's, else per-image"),
    as_json: bool = typer.Option(False, "--json", help="print the fit report as JSON"),
) -> None:
    """Fit an affine camera model (H and offset) by ridge regression; report its error on val."""
    check_out_file(out, what="a .npz file (the camera model to write)")
    from opticsfree.reconstruction.calibration import calibrate as run

    with console.status("fitting the camera model"):
        rep = run(captures, out, size=size, limit=limit, seed=seed, val_fraction=val_fraction,
                  display_gamma=display_gamma, output_gamma=output_gamma, exposure=exposure)
    if as_json:
        print_json(rep)
        return
    typer.echo(f"wrote {out}: H {rep['out_shape']} <- {rep['in_shape']} from {rep['n_train']} pairs")
    typer.echo(f"  val relative error {rep['val_relative_error']:.4f}  (train {rep['train_relative_error']:.4f}), "
               f"val RMSE {rep['val_rmse']:.4g}, n_val {rep['n_val']}")
    typer.echo(f"  lambda {rep['lambda']:.3g} ({rep['lambda_relative']:.1e} x mean eigenvalue); "
               f"gammas display {rep['display_gamma']}, output {rep['output_gamma']}; exposure {rep['exposure']}")
