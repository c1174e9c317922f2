"""CLI: ``opticsfree camera info | fit | sweep`` -- how much of the scene a camera keeps, a camera
matched to measured numbers, and design sweeps (library: :mod:`opticsfree.design`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from opticsfree import seed_study
from opticsfree.cli.common import (COUNT, LIMIT, POSITIVE, SEED, SIZE, Executor, address_option, app, command,
                                   executor_option, print_json)
from opticsfree.errors import ConfigError
from opticsfree.optics.config import list_presets  # light: pydantic, no torch
from opticsfree.utils.io import check_out_dir, check_out_file
from opticsfree.utils.progress import console, progress


camera_app = typer.Typer(
    rich_markup_mode=None,
    help="Camera design: how much of the scene a camera keeps (info), a camera matched to measured "
         "numbers (fit), and parameter sweeps (sweep).",
    no_args_is_help=True,
)
app.add_typer(camera_app, name="camera")

# options shared by info, fit and sweep
Dataset = Annotated[str, typer.Option("--dataset", help="cifar10, fashion-mnist, digits or folder")]
Data = Annotated[Optional[Path], typer.Option("--data", help="local copy of the dataset (file or directory)")]
Seed = Annotated[int, typer.Option("--seed", **SEED, help="subset, capture-noise and validation seed")]
Size = Annotated[int, typer.Option("--size", **SIZE, help="compare at size x size")]


def _dataset(name: str, data: Optional[Path]):
    from opticsfree.data import load_dataset

    with console.status(f"loading {name}"):
        return load_dataset(name, data=data, splits=("train", "test"))


def _print_info(info) -> None:
    from opticsfree.design.info import METRICS

    typer.echo(f"{info.source} on {info.dataset}: {info.n_train} train scenes ({info.n_val} for "
               f"validation), {info.n_test} test scenes, {info.seconds:.1f} s")
    labels = {"raw_psnr": "raw PSNR (dB)", "raw_ssim": "raw SSIM", "linear_psnr": "linear PSNR (dB)",
              "linear_ssim": "linear SSIM", "linear_probe_accuracy": "linear probe accuracy (%)",
              "rank_1e2": "singular values > 1e-2", "rank_1e3": "singular values > 1e-3",
              "coverage": "coverage", "footprint_spread_px": "footprint spread (display px)"}
    for k in METRICS:
        v = getattr(info, k)
        if v is not None:
            typer.echo(f"  {labels[k]:<32} {v:.4g}")
    typer.echo(f"  ({info.conventions}; linear: ridge fitted on train, lambda chosen on validation; "
               "probe: scikit-learn RidgeClassifier)")


@command("info", parent=camera_app)
def info(
    camera: Optional[str] = typer.Argument(None, help=f"camera preset ({', '.join(list_presets())}) "
                                                      "or TOML file"),
    captures: Optional[Path] = typer.Option(None, "--captures", help="measure an existing capture set "
                                            "instead (simulated or real; the numbers that need H are omitted)"),
    dataset: Dataset = "cifar10",
    data: Data = None,
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="at most N scenes per split, class-stratified"),
    seed: Seed = 0,
    size: Size = 32,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the figures (footprints, "
                                       "singular spectrum, linear reconstructions)"),
) -> None:
    """How much of the scene a camera keeps: raw and linear-estimator quality, a linear probe's
    accuracy, the rank of H, and where the sensor's pixels look (coverage)."""
    from opticsfree.design.info import InfoArtifacts, camera_info, camera_matrix, captures_info

    if (camera is None) == (captures is None):
        raise ConfigError("give either a CAMERA (preset or TOML file) or --captures DIR, not both")
    if out is not None:
        check_out_dir(out, "a folder for the figures")
    art = InfoArtifacts() if out is not None else None
    H = None
    with console.status("camera info") as status:
        def step(name: str) -> None:
            status.update(f"camera info: {name}")

        if captures is not None:
            result = captures_info(captures, limit=limit, seed=seed, size=size, artifacts=art, on_progress=step)
        else:
            from opticsfree.optics import Camera, load_camera_config

            cfg = load_camera_config(camera)
            ds = _dataset(dataset, data)
            result = camera_info(cfg, ds, limit=limit, seed=seed, size=size, artifacts=art, on_progress=step)
            if out is not None:
                tr = ds.splits["train"].images
                H = camera_matrix(Camera(cfg, tr.shape[1:3], tr.shape[-1]))
    if out is not None:
        from opticsfree.design.figures import draw_info

        for p in draw_info(art, out, H):
            console.print(f"wrote {p}")
    if as_json:
        print_json(result.to_json())
    else:
        _print_info(result)


@command("fit", parent=camera_app)
def fit(
    base: str = typer.Argument(..., help="starting camera (preset or TOML file)"),
    target: List[str] = typer.Option(..., "--target", metavar="KEY=VALUE",
                                     help="a camera info number to match, repeatable (e.g. "
                                          f"raw_psnr={seed_study.DEGRADATION.psnr})"),
    free: List[str] = typer.Option(..., "--free", metavar="PATH=LO:HI",
                                   help="a parameter to search within bounds, repeatable "
                                        "(e.g. geometry.gap_mm=0.3:3)"),
    out: Path = typer.Option(..., "--out", help="camera TOML file to write"),
    dataset: Dataset = "cifar10",
    data: Data = None,
    limit: int = typer.Option(2000, "--limit", **LIMIT, help="scenes per split of every evaluation (class-stratified)"),
    seed: Seed = 0,
    size: Size = 32,
    max_evals: int = typer.Option(60, "--max-evals", **COUNT, help="evaluation budget of the optimiser"),
    tolerance: float = typer.Option(0.05, "--tolerance", **POSITIVE, help="relative error within which a target is reached"),
    name: Optional[str] = typer.Option(None, "--name", help="name of the fitted camera (default: the file's stem)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Fit free camera parameters so that the camera's `camera info` numbers meet the targets
    (SciPy's bounded optimisers); writes a complete camera TOML recording targets and values.
    Exit status 0 when every target is reached, 1 when some are not (the best camera found is
    still written, and the unreached targets named)."""
    from opticsfree.design.fit import camera_toml, fit_camera, fit_header, parse_targets
    from opticsfree.design.params import parse_bound
    from opticsfree.optics import load_camera_config
    from opticsfree.utils.io import write_text

    if out.suffix != ".toml":
        raise ConfigError(f"--out {out}: the camera file must end in .toml")
    check_out_file(out, "a camera .toml file")
    cam = load_camera_config(base)
    targets = parse_targets(target)
    bounds = [parse_bound(s, cam) for s in free]
    ds = _dataset(dataset, data)
    with progress() as bar:
        task = bar.add_task("camera fit", total=max_evals)

        def on_eval(i: int, row: dict) -> None:
            bar.update(task, completed=min(i, max_evals))
            if not sys.stderr.isatty():
                vals = ", ".join(f"{k}={v:.4g}" for k, v in row["values"].items())
                console.print(f"eval {i}: {vals} -> objective {row['objective']:.3g}", soft_wrap=True)

        result = fit_camera(cam, ds, targets, bounds, limit=limit, seed=seed, size=size,
                            max_evals=max_evals, tolerance=tolerance, on_eval=on_eval)
    fitted = result.camera.replace(name=name or out.stem,
                                   description=f"fitted by camera fit from {cam.name}: "
                                               + ", ".join(f"{k}={v:g}" for k, v in targets.items()))
    words = ["opticsfree", "camera", "fit", base, *[f"--target={t}" for t in target],
             *[f"--free={f}" for f in free], f"--out={out}", f"--dataset={dataset}", f"--limit={limit}",
             f"--seed={seed}", f"--size={size}", f"--max-evals={max_evals}", f"--tolerance={tolerance}"]
    command_line = " ".join(shlex.quote(w) for w in words)
    write_text(out, camera_toml(fitted, fit_header(result, cam.name, command_line, ds.name, limit, seed)))
    if as_json:
        print_json({**result.to_json(), "out": str(out)})
        if not result.ok:
            raise typer.Exit(1)
        return
    for k, t in result.targets.items():
        v = result.reached.get(k)
        mark = "ok" if result.errors[k] <= tolerance else "NOT REACHED"
        typer.echo(f"  {k:<24} target {t:<8g} reached {v if v is None else f'{v:.4g}':<8} "
                   f"({result.errors[k]:.1%})  {mark}")
    for p, v in result.values.items():
        typer.echo(f"  {p} = {v:.5g}")
    typer.echo(f"wrote {out} ({result.evaluations} evaluations)")
    if not result.ok:
        typer.echo(f"best values reached are in {out}; targets not reached within {tolerance:.0%}: "
                   f"{', '.join(result.unreached())}", err=True)
        raise typer.Exit(1)


@command("sweep", parent=camera_app)
def sweep(
    base: str = typer.Argument(..., help="camera (preset or TOML file)"),
    param: List[str] = typer.Option(..., "--param", metavar="PATH=LO:HI:N",
                                    help="a parameter and its grid, once or twice "
                                         "(e.g. geometry.gap_mm=0.25:4:8)"),
    out: Path = typer.Option(..., "--out", help="output folder (sweep.csv, heatmaps)"),
    dataset: Dataset = "cifar10",
    data: Data = None,
    limit: int = typer.Option(2000, "--limit", **LIMIT, help="scenes per split at every grid point (class-stratified)"),
    seed: Seed = 0,
    size: Size = 32,
    yes: bool = typer.Option(False, "--yes", help="run a grid of more than 100 points"),
    executor: Executor = executor_option("point"),
    address: Optional[str] = address_option(),
) -> None:
    """The `camera info` numbers over a grid of one or two camera parameters: sweep.csv and
    heatmaps of linear_psnr, raw_psnr and linear_probe_accuracy. Resumable. Prints the number
    of points and an estimate of the time first; more than 100 points need --yes."""
    from opticsfree.design.params import parse_axis
    from opticsfree.design.sweep import MAX_POINTS, estimate_seconds, sweep_camera
    from opticsfree.optics import load_camera_config

    cam = load_camera_config(base)
    axes = [parse_axis(s, cam) for s in param]
    if not 1 <= len(axes) <= 2:
        raise ConfigError(f"give one or two --param PATH=LO:HI:N, got {len(axes)}")
    total = 1
    for a in axes:
        total *= a.n
    eta = estimate_seconds(total, limit)
    when = f"{eta / 3600:.1f} h" if eta >= 3600 else f"{eta / 60:.0f} min"
    if total > MAX_POINTS and not yes:
        raise ConfigError(f"--param: {total:,} grid points, about {when} on 2 CPU cores; add --yes to run "
                          f"them, or use fewer points (at most {MAX_POINTS} without --yes)")
    console.print(f"camera sweep: {total:,} grid points x {limit:,} scenes per split, about {when} on 2 CPU cores")
    ds = _dataset(dataset, data)
    with progress() as bar:
        task = bar.add_task("camera sweep", total=total)

        def on_point(done: int, n: int, row: dict) -> None:
            bar.update(task, completed=done)

        sweep_camera(cam, axes, ds, out, limit=limit, seed=seed, size=size, on_point=on_point,
                     executor=executor, address=address)
    console.print(f"wrote {out / 'sweep.csv'} and heatmaps in {out}")
