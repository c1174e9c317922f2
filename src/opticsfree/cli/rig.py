"""``opticsfree rig capture|calibrate|preview|report`` and ``opticsfree live``: thin wrappers over
:mod:`opticsfree.rig` and :mod:`opticsfree.inference.live`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from opticsfree.cli.common import (COUNT, FRAMES, GAMMA, LIMIT, RERUN_TO_REDO, RERUN_WITH_RESUME, SEED, THREADS, app,
                                   choices, command, parse_key_values, print_json)
from opticsfree.utils.progress import console, progress

rig_app = typer.Typer(
    rich_markup_mode=None,
    help="The seed's rig (a display showing each scene, a bare camera recording it): collect a "
         "capture set (capture), measure the camera with patterns (calibrate), align the "
         "hardware (preview), plot drift (report). Real hardware (pygame, opencv, picamera2) or "
         "the virtual rig (configs/rigs/virtual-seed.toml); docs/rig.md.",
    no_args_is_help=True,
)
app.add_typer(rig_app, name="rig")

#: ``--split`` of rig capture and live (simulate's choices).
RigSplit = choices(("train", "test", "all"))
#: ``--patterns`` of rig calibrate (opticsfree.rig.calibrate.PATTERNS).
Patterns = choices(("hadamard", "random"))

RIG_HELP = "The rig file (TOML): display, camera, monitor; e.g. configs/rigs/virtual-seed.toml."


#: ``--rig RIG.toml`` and ``--set SECTION.FIELD=VALUE`` of every rig command and live.
RigFile = Annotated[Path, typer.Option("--rig", metavar="RIG.toml", help=RIG_HELP)]
RigSets = Annotated[List[str], typer.Option(
    "--set", metavar="SECTION.FIELD=VALUE",
    help="Change a rig-file field for this command, repeatable (e.g. --set camera.noise=false).")]


def _rig(path: Path, sets: List[str]):
    from opticsfree.rig import load_rig_config

    return load_rig_config(path, parse_key_values(sets, "--set"))


def _splits(split: str) -> tuple[str, ...]:
    return ("train", "test") if split == "all" else (split,)


@command("capture", parent=rig_app, resume_hint=RERUN_WITH_RESUME,
         help="Show every scene of a dataset on the rig's display, record it with its camera and "
              "write a capture set (the scenes simulate would choose with the same --split, "
              "--limit and --seed). Resumable to the scene with --resume; drift is checked every "
              "[monitor] every scenes (drift.csv).")
def capture_cmd(
    rig: RigFile,
    sets: RigSets = [],
    dataset: str = typer.Option(..., "--dataset", help="cifar10, fashion-mnist, digits or folder"),
    out: Path = typer.Option(..., "--out", metavar="SET", help="The capture set to write."),
    data: Optional[Path] = typer.Option(None, "--data", help="Local copy of the dataset (file or directory)."),
    split: RigSplit = typer.Option("all", "--split", help="Splits to capture."),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="At most N scenes per split, class-stratified."),
    frames: int = typer.Option(1, "--frames", **FRAMES, help="Captures per scene."),
    seed: int = typer.Option(0, "--seed", **SEED, help="Subset selection (and the virtual camera's noise)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted capture at its first missing scene."),
    json_out: bool = typer.Option(False, "--json", help="Print the capture report as JSON."),
) -> None:
    from opticsfree.data import load_dataset
    from opticsfree.rig.capture import rig_capture

    cfg = _rig(rig, sets)
    with console.status(f"loading {dataset}"):
        ds = load_dataset(dataset, data=data, splits=_splits(split))

    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    with progress(unit="scenes") as bar:
        task = bar.add_task(f"capture ({cfg.name})", total=None)
        report = rig_capture(ds, cfg, out, splits=_splits(split), limit=limit, frames=frames, seed=seed,
                             resume=resume, rig_file=str(rig),
                             on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                             on_warning=warn)
    if json_out:
        print_json(report.to_json())
        return
    rate = f" ({report.scenes_per_s:.1f} scenes/s)" if report.scenes_per_s else ""
    resumed = f", {report.n_resumed} were already there" if report.n_resumed else ""
    console.print(f"captured {report.n_captured} of {report.n_scenes} scenes in {report.seconds:.1f} s"
                  f"{rate}{resumed}: {out} (rig {cfg.name})")


@command("calibrate", parent=rig_app, resume_hint=RERUN_TO_REDO,
         help="Measure the rig camera's transfer matrix H with displayed patterns (dark and flat "
              "frames, Hadamard or random binary patterns and their complements, repeated), its "
              "offset and per-pixel noise; write the camera.npz of `calibrate`, usable by "
              "`reconstruct train --camera`. Reports the residual on held-out patterns.")
def calibrate_cmd(
    rig: RigFile,
    sets: RigSets = [],
    out: Path = typer.Option(..., "--out", metavar="camera.npz", help="The calibration file to write."),
    patterns: Patterns = typer.Option("hadamard", "--patterns", help="Pattern family."),
    repeats: int = typer.Option(4, "--repeats", min=1, max=1000, help="Times the sequence is shown (>= 2: noise estimates)."),
    size: int = typer.Option(32, "--size", min=2, max=128, help="Display elements per side (hadamard: a power of 2)."),
    channels: int = typer.Option(3, "--channels", min=1, max=3, help="3: RGB primaries measured; 1: grey."),
    held_out: Optional[int] = typer.Option(None, "--held-out", min=1, max=100000,
                                           help="Random patterns kept out of the fit (default max(16, size^2/16))."),
    seed: int = typer.Option(0, "--seed", **SEED, help="Random and held-out patterns."),
    output_gamma: float = typer.Option(2.2, "--output-gamma", **GAMMA,
                                       help="Decoding of 8-bit frames to linear units (no raw output)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    from opticsfree.rig.calibrate import rig_calibrate

    cfg = _rig(rig, sets)
    with progress(unit="frames") as bar:
        task = bar.add_task(f"calibrate ({cfg.name})", total=None)
        cal = rig_calibrate(cfg, out, size=size, patterns=patterns, repeats=repeats, channels=channels,
                            held_out=held_out, seed=seed, output_gamma=output_gamma,
                            on_progress=lambda d, t: bar.update(task, completed=d, total=t))
    rep = cal.to_json()
    if json_out:
        print_json(rep)
        return
    n = rep["noise"]
    console.print(f"wrote {out}: H {rep['out_shape']} <- {rep['in_shape']} from {rep['n_patterns']} {patterns} "
                  f"patterns x {repeats} ({rep['frames']} frames, {rep['seconds']:.1f} s)")
    console.print(f"  held-out patterns: relative residual {rep['held_out_relative_error']:.4f}")
    if n.get("read_noise_linear") is not None:
        fw = n.get("effective_full_well_e")
        console.print(f"  noise: black {n['read_noise_linear']:.2e}, white {n['white_noise_linear']:.2e} (linear units)"
                      + (f"; effective full well {fw:.0f} e-, read noise {n['read_noise_e']:.2f} e-" if fw else ""))
    if rep.get("true_h_relative_error") is not None:
        console.print(f"  against the virtual camera's true H: relative Frobenius error {rep['true_h_relative_error']:.4f}")


@command("preview", parent=rig_app, resume_hint=RERUN_TO_REDO,
         help="Show an alignment target and watch the capture: a window with the displayed image, "
              "the capture, its histogram and clipping, and its correlation with the simulator's "
              "prediction. Headless (--frames N --json) it prints the same numbers.")
def preview_cmd(
    rig: RigFile,
    sets: RigSets = [],
    frames: Optional[int] = typer.Option(None, "--frames", min=1, max=1000000,
                                         help="Frames to measure (default: until the window is closed)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Show this image instead of the alignment target."),
    camera: Optional[str] = typer.Option(None, "--camera",
                                         help="Camera preset or TOML to predict the capture with "
                                              "(default: the virtual camera's model; hardware: none)."),
    json_out: bool = typer.Option(False, "--json", help="No window: print the numbers as JSON."),
) -> None:
    from opticsfree.optics import load_camera_config
    from opticsfree.rig.preview import preview
    from opticsfree.utils.images import decode_image

    cfg = _rig(rig, sets)
    if json_out and frames is None:
        frames = 10
    img = decode_image(image) if image is not None else None
    model = load_camera_config(camera) if camera else None

    def line(stats: dict) -> None:
        if not json_out:
            corr = "-" if stats["correlation"] is None else f"{stats['correlation']:.3f}"
            typer.echo(f"frame {stats['frame']}: mean {stats['mean']:.3f}, clipped {100 * stats['clipped_fraction']:.2f}%, "
                       f"black {100 * stats['black_fraction']:.2f}%, correlation {corr}", err=True)

    res = preview(cfg, frames=frames, image=img, camera_model=model, window=not json_out, on_frame=line)
    if json_out:
        print_json(res.to_json())


@command("report", parent=rig_app, resume_hint=RERUN_TO_REDO,
         help="Plot a rig capture's drift.csv (reference PSNR, black level, clipping against the "
              "scene index) and summarise it.")
def report_cmd(
    directory: Path = typer.Argument(..., metavar="SET", help="A capture set made by `rig capture`."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="PNG",
                                       help="The figure (default SET-drift.png beside the set)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    from opticsfree.captures.show import check_png_out
    from opticsfree.rig.capture import drift_figure_path, plot_drift, summarise_drift

    check_png_out(out if out is not None else drift_figure_path(directory))
    summary = summarise_drift(directory)
    path = plot_drift(directory, out)
    summary["figure"] = str(path)
    if json_out:
        print_json(summary)
        return
    console.print(f"{summary['checks']} drift checks; reference PSNR min {summary['min_reference_psnr_db']:.2f} dB, "
                  f"last {summary['last_reference_psnr_db']:.2f} dB; black level max {summary['max_dark_level']:.4f}; "
                  f"clipped max {100 * summary['max_clipped_fraction']:.2f}%; wrote {path}")


@command("live", resume_hint=RERUN_TO_REDO,
         help="Classify the rig camera's stream in real time with a trained RUN or an exported "
              "MODEL.onnx (the preprocessing and posteriors of predict): top classes drawn over "
              "the preview, frames/s shown. Headless (--json) one JSON line per frame.")
def live_cmd(
    model: Annotated[Path, typer.Argument(metavar="RUN|MODEL.onnx", help="A run directory or an exported model.")],
    rig: RigFile,
    sets: RigSets = [],
    fuse: int = typer.Option(1, "--fuse", min=1, max=1000, metavar="K", help="Fuse the last K frames (Bayesian update)."),
    reject: bool = typer.Option(False, "--reject", help="Flag frames farther than the validated threshold."),
    top: int = typer.Option(3, "--top", **COUNT, help="Classes shown per frame."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, max=10000000,
                                         help="Frames to classify (default: until Ctrl-C or the window closes)."),
    checkpoint: str = typer.Option("last", "--checkpoint", help="RUN: best, last or an epoch number."),
    prior: str = typer.Option("uniform", "--prior", help="RUN: uniform, train or a JSON file."),
    dataset: Optional[str] = typer.Option(None, "--dataset",
                                          help="Show this dataset's scenes, one per frame (default: the "
                                               "display is not driven)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Local copy of the dataset."),
    split: RigSplit = typer.Option("test", "--split", help="Split of the shown scenes."),
    limit: Optional[int] = typer.Option(None, "--limit", **LIMIT, help="At most N scenes, class-stratified."),
    seed: int = typer.Option(0, "--seed", **SEED, help="Subset selection (and the virtual camera's noise)."),
    save_frames: Optional[Path] = typer.Option(None, "--save-frames", metavar="DIR",
                                               help="Save every frame (PNG) to a new folder."),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS, help="torch/onnxruntime CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="No window: one JSON line per frame on stdout."),
) -> None:
    from opticsfree.inference.live import load_live_model, run_live

    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = _rig(rig, sets)
    lm = load_live_model(model, checkpoint, prior, threads)
    scenes = None
    if dataset is not None:
        from opticsfree.data import load_dataset
        from opticsfree.rig.capture import plan_scenes

        ds = load_dataset(dataset, data=data, splits=_splits(split))
        scenes = [(s.image, ds.classes[s.label]) for s in plan_scenes(ds, _splits(split), limit, seed)]

    def emit(row: dict) -> None:
        if json_out:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        else:
            tops = ", ".join(f"{t['class']} {t['probability']:.2f}" for t in row["top"])
            typer.echo(f"frame {row['frame']}: {tops}  ({row['frames_per_s']:.1f} frames/s)", err=True)

    rep = run_live(lm, cfg, frames=frames, fuse=fuse, reject=reject, top=top, scenes=scenes,
                   save_frames=save_frames, window=not json_out, seed=seed, on_frame=emit)
    s = rep.to_json()
    acc = f"; accuracy {s['accuracy']:.2f}% on the shown scenes" if s["accuracy"] is not None else ""
    typer.echo(f"classified {s['frames']} frames in {s['seconds']:.1f} s ({s['frames_per_s']} frames/s; model "
               f"{s['model_ms_per_frame']} ms, camera {s['camera_ms_per_frame']} ms per frame){acc}", err=True)
