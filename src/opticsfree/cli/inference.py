"""``opticsfree predict`` and ``opticsfree export``: thin wrappers over opticsfree.inference."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from opticsfree.cli.common import (BATCH, COUNT, FRAMES, RERUN_TO_REDO, THREADS, WORKERS, choices, command,
                                   fail, print_json)

#: ``--format`` and ``--input`` of export: opticsfree.inference.export.FORMATS and INPUT_DTYPES
#: (written out so that the command line starts without loading torch).
ExportFormat = choices(("onnx",))
InputDtype = choices(("uint8", "float"))
Int8Method = choices(("dynamic", "static"))
Engine = choices(("torch", "onnx"))

CHECKPOINT_HELP = "best (highest validation accuracy), last, or an epoch number."


def _warn_calibration(classifier) -> None:
    from opticsfree.inference.bundle import fit_hint

    if classifier.temperature_source is None:
        typer.echo(f"warning: {classifier.run} has no fitted temperature for epoch "
                   f"{classifier.epoch}; posteriors use T = 1 (predicted classes are unaffected); "
                   f"fit it with `{fit_hint(classifier)}`", err=True)


@command("predict", resume_hint=RERUN_TO_REDO,
         help="Classify new captures with a trained RUN. Exit status 0 when every capture was "
              "predicted, 1 when some could not be read (each named on stderr), 2 on errors.")
def predict_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="RUN directory of a trained model."),
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...",
                                        help="Image files, folders of captures (recursively) or "
                                             "capture sets."),
    checkpoint: str = typer.Option("last", "--checkpoint", help=CHECKPOINT_HELP),
    frames_per_scene: Optional[int] = typer.Option(
        None, "--frames", **FRAMES, metavar="K",
        help="Fuse K consecutive captures per scene (1: no fusion). Default: files named "
             "<scene>_fNN.<ext> are the frames of <scene>; a capture set's index groups its rows."),
    prior: str = typer.Option("uniform", "--prior",
                              help="uniform, train (training class frequencies) or a JSON file "
                                   "of class -> probability."),
    mirror: bool = typer.Option(False, "--mirror",
                                help="Test-time mirroring: classify each capture and its left-right flip and "
                                     "average them (refused unless the set's camera is left-right "
                                     "symmetric; docs/metric-learning.md)."),
    reject: bool = typer.Option(False, "--reject",
                                help="Flag captures farther from their nearest prototype than the "
                                     "run's validated threshold (evaluate --classifier threshold)."),
    top: Optional[int] = typer.Option(None, "--top", **COUNT, metavar="K",
                                      help="Report the K most probable classes (default: all)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME",
                                        help="Capture-set inputs: only this split (default: all)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE.csv|FILE.jsonl",
                                       help="Write the predictions (atomically)."),
    json_out: bool = typer.Option(False, "--json",
                                  help="Print a JSON object: summary, and the predictions "
                                       "unless --out is given."),
    engine: Engine = typer.Option(
        "torch", "--engine",
        help="torch (the reference), or onnx: the run's graph run by onnxruntime (faster on the "
             "CPU; needs opticsfree[export]; checked against PyTorch on the first batch)."),
    batch_size: int = typer.Option(256, "--batch-size", **BATCH, help="Images per forward pass."),
    workers: int = typer.Option(0, "--workers", **WORKERS,
                                help="Decoding processes for large inputs (0: one per CPU, 1: in this process)."),
    threads: Optional[int] = typer.Option(None, "--threads", **THREADS,
                                          help="torch (and onnxruntime) CPU threads (default: theirs)."),
) -> None:
    """Predict the class of each capture (or scene of frames): posterior, nearest-prototype
    distance, and with --reject the run's open-set decision."""
    from opticsfree.inference.bundle import load_classifier
    from opticsfree.inference.predict import (check_options, check_predict_out, predict,
                                              raise_if_nothing_predicted, write_predictions)
    from opticsfree.utils.progress import progress

    check_predict_out(out)
    if threads:
        import torch

        torch.set_num_threads(threads)
    clf = load_classifier(run, checkpoint, prior=prior, batch_size=batch_size, mirror=mirror)
    check_options(clf, reject, top)
    _warn_calibration(clf)
    with progress(transient=True) as bar:
        task = bar.add_task("predict", total=None)
        result = predict(clf, inputs, frames_per_scene=frames_per_scene, split=split,
                         reject=reject, top=top, batch_size=batch_size, workers=workers,
                         engine=engine, threads=threads,
                         on_progress=lambda done, total: bar.update(task, completed=done,
                                                                    total=total))
    for f in result.failures:
        typer.echo(f"skipped {f}", err=True)
    raise_if_nothing_predicted(result)
    if out is not None:
        write_predictions(result, out)
    if json_out:
        print_json(result.to_json(rows=out is None))
    elif out is None:
        for r in result.rows():
            dist = "-" if r["distance"] is None else f"{r['distance']:.4f}"
            flag = "  rejected" if r.get("rejected") else ""
            typer.echo(f"{r['path']}\t{r['predicted']}\t{r['probability']:.4f}\t{dist}{flag}")
    s = result.summary()
    rate = f" ({s['captures_per_s']:,.0f} captures/s)" if s["captures_per_s"] else ""
    acc = f"; accuracy {s['accuracy']:.2f}% on the labelled scenes" if s["accuracy"] is not None else ""
    rej = f"; {s['n_rejected']} rejected" if "n_rejected" in s else ""
    typer.echo(f"predicted {s['n_predicted']} captures ({s['n_scenes']} scenes) in "
               f"{s['seconds']:.2f} s{rate}{rej}{acc}"
               + (f"; wrote {out}" if out is not None else ""), err=True)
    if result.failures:
        fail(f"{len(result.failures)} of {result.n_inputs} capture(s) could not be predicted "
             "(listed above); the others were predicted", code=1)


@command("export", resume_hint=RERUN_TO_REDO,
         help="Export a trained RUN as one ONNX graph (captures in; posteriors, embedding and "
              "nearest-prototype distance out), verified with onnxruntime on the run's test "
              "captures. Needs `pip install 'opticsfree[export]'`.")
def export_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="RUN directory of a trained model."),
    out: Path = typer.Option(..., "--out", metavar="MODEL.onnx", help="The ONNX file to write."),
    checkpoint: str = typer.Option("last", "--checkpoint", help=CHECKPOINT_HELP),
    fmt: ExportFormat = typer.Option("onnx", "--format", help="Export format."),
    int8: bool = typer.Option(False, "--int8",
                              help="Also write MODEL.int8.onnx (onnxruntime int8 quantisation, "
                                   "see --int8-method) with its measured accuracy change and size."),
    int8_method: Int8Method = typer.Option(
        "dynamic", "--int8-method",
        help="dynamic: onnxruntime's dynamic quantiser (no data); static: its static quantiser, "
             "activation ranges calibrated on the run's train captures (faster on CPUs)."),
    input_dtype: InputDtype = typer.Option("uint8", "--input",
                                           help="Input dtype: uint8 (0..255) or float (0..1)."),
    prior: str = typer.Option("uniform", "--prior",
                              help="Prior baked into the posteriors: uniform, train or a JSON file."),
    verify: int = typer.Option(2000, "--verify", min=1, metavar="N",
                               help="Test captures sampled to check the graph against PyTorch."),
    json_out: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export RUN to ONNX (dynamic batch; class names, input shape, preprocessing, temperature
    and threshold in the metadata)."""
    from opticsfree.inference.bundle import load_classifier
    from opticsfree.inference.export import export_onnx, require_onnx

    require_onnx()  # before loading anything
    from opticsfree.utils.io import check_out_file

    check_out_file(out, "an .onnx file")
    clf = load_classifier(run, checkpoint, prior=prior)
    _warn_calibration(clf)
    res = export_onnx(clf, out, int8=int8, int8_method=int8_method, input_dtype=input_dtype,
                      n_verify=verify)
    if json_out:
        print_json(res.to_json())
        return
    v = res.fp32
    acc = "" if v.accuracy is None else f"; accuracy {v.accuracy:.2f}% (PyTorch {res.torch_accuracy:.2f}%)"
    typer.echo(f"wrote {res.path} ({res.size_bytes / 1e6:.2f} MB, input {res.input_dtype} "
               f"{res.input_shape}, outputs {', '.join(res.outputs)})")
    typer.echo(f"onnxruntime vs PyTorch on {v.n} {res.verify_split} captures: classes agree on "
               f"{100 * v.agreement:.2f}%, largest posterior difference "
               f"{v.max_posterior_diff:.1e}{acc}")
    if res.int8 is not None:
        q = res.int8
        change = ("" if res.int8_accuracy_change is None
                  else f", accuracy {q.accuracy:.2f}% ({res.int8_accuracy_change:+.2f} points)")
        typer.echo(f"wrote {res.int8_path} ({res.int8_method} int8, "
                   f"{res.int8_size_bytes / 1e6:.2f} MB, "
                   f"{res.int8_size_bytes / res.size_bytes:.0%} of fp32): classes agree with "
                   f"PyTorch on {100 * q.agreement:.2f}%{change}")
