"""CLI: simulate a capture set, measure its quality, draw its figure."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from opticsfree.cli.common import COUNT, FRAMES, LIMIT, SEED, SIZE, WORKERS, choices, command, print_json
from opticsfree.errors import OpticsfreeError
from opticsfree.optics.config import list_presets  # light: pydantic, no torch
from opticsfree.utils.progress import console, progress

#: ``simulate --split``.
SimulateSplit = choices(("train", "test", "all"))


@command("simulate")
def simulate(
    dataset: str = typer.Option(..., "--dataset", help="cifar10, fashion-mnist, digits or folder"),
    camera: str = typer.Option(..., "--camera", help=f"preset ({', '.join(list_presets())}) or a TOML file"),
    out: Path = typer.Option(..., "--out", help="output capture-set directory"),
    data: Optional[Path] = typer.Option(None, "--data", help="local copy of the dataset (file or directory)"),
    split: SimulateSplit = typer.Option("all", "--split", help="splits to simulate"),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="at most N images per split, class-stratified"),
    frames: int = typer.Option(1, "--frames", **FRAMES, help="captures per scene (independent noise)"),
    seed: int = typer.Option(0, "--seed", **SEED, help="random seed (subset and capture noise)"),
    workers: int = typer.Option(0, "--workers", **WORKERS, help="encoding processes (0: one per CPU, 1: in this process)"),
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="(--dataset folder) skip image files that cannot be read "
                                       "(empty, truncated) and list them in the manifest's "
                                       "'skipped'; without it the first one stops the command"),
) -> None:
    """Simulate lensless captures of a dataset with a camera model into a capture set.

    Resumable: rerunning the same command completes an interrupted set without redoing files.
    """
    from opticsfree.captures.simulate import check_out_path, load_simulation_dataset, simulate_capture_set
    from opticsfree.errors import ConfigError
    from opticsfree.optics import load_camera_config

    if skip_bad and dataset.strip().lower() != "folder":
        raise ConfigError(f"--skip-bad applies to --dataset folder (ImageFolder trees), not {dataset!r}")
    cam = load_camera_config(camera)
    check_out_path(out)
    splits = ("train", "test") if split == "all" else (split,)
    with console.status(f"loading {dataset}"):
        ds, skipped = load_simulation_dataset(dataset, data=data, splits=splits, skip_bad=skip_bad)
    for s in skipped:
        typer.echo(f"warning: skipped unreadable image {s['path']}: {s['reason']}", err=True)

    def on_warning(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    with progress() as bar:
        tasks: dict[str, int] = {}

        def on_progress(s: str, done: int, total: int) -> None:
            if s not in tasks:
                tasks[s] = bar.add_task(f"simulate {s}", total=total)
            bar.update(tasks[s], completed=done)

        simulate_capture_set(ds, cam, out, splits=splits, limit=limit, frames=frames, seed=seed,
                             workers=workers, on_progress=on_progress,
                             skipped=skipped if skip_bad else None, on_warning=on_warning)
    if skipped:
        typer.echo(f"warning: {len(skipped)} unreadable image(s) skipped, listed in "
                   f"{out / 'manifest.json'} ('skipped')", err=True)
    console.print(f"wrote capture set {out} (camera {cam.name}, dataset {ds.name}: {ds.source})")


@command("quality")
def quality(
    directory: Path = typer.Argument(..., help="capture set"),
    split: str = typer.Option("test", "--split"),
    size: int = typer.Option(32, "--size", **SIZE, help="compare at size x size"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """MSE, PSNR and SSIM of every capture against its original (mean +/- std)."""
    from opticsfree.captures.quality import CONVENTION, capture_quality

    q = capture_quality(directory, split=split, size=size)
    if as_json:
        print_json(q)
        return
    typer.echo(f"{directory} [{split}], n = {q['n']}")
    typer.echo(f"  MSE   {q['mse']:.4f} (0-255 scale: {q['mse_255']:.1f})")
    typer.echo(f"  PSNR  {q['psnr']:.2f} +/- {q['psnr_std']:.2f} dB")
    typer.echo(f"  SSIM  {q['ssim']:.3f} +/- {q['ssim_std']:.3f}")
    typer.echo(f"  ({CONVENTION.format(size=size)})")


@command("show")
def show(
    directory: Path = typer.Argument(..., help="capture set"),
    out: Path = typer.Option(..., "--out", help="output PNG"),
    split: Optional[str] = typer.Option(None, "--split"),
    n: int = typer.Option(8, "--n", **COUNT, help="number of examples"),
    with_: List[str] = typer.Option(
        [], "--with", metavar="NAME=DIR",
        help="compare with other capture sets of the same scenes (e.g. reconstructions), "
             "repeatable: draws original | DIRECTORY's images | each NAME's images"),
) -> None:
    """Figure: originals beside their captures, and the camera's point responses; with --with,
    the same test scenes across capture sets (original | lensless | each reconstruction)."""
    from opticsfree.captures.show import compare_capture_sets, show_capture_set

    if with_:
        sets: dict[str, Path] = {"lensless": directory}
        for item in with_:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise OpticsfreeError(f"--with {item!r}: expected NAME=DIR (e.g. unet=runs/seed-unet)")
            sets[name] = Path(path)
        p = compare_capture_sets(sets, out, split=split or "test", n=n)
    else:
        p = show_capture_set(directory, out, split=split, n=n)
    console.print(f"wrote {p}")
