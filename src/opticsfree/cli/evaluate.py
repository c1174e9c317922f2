"""``opticsfree evaluate RUN``: score every checkpoint of a metric-learning run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from opticsfree.cli.common import RERUN_TO_REDO, choices, command, other_captures_option, print_json
from opticsfree.errors import DataError
from opticsfree.evaluation.names import classifier_names

#: ``--classifier``: the classifiers registered when this module is imported
#: (opticsfree.evaluation.names).
Classifier = choices(classifier_names())


def run_epochs(run: Path) -> list[int]:
    """The checkpointed epochs of RUN, ascending.

    Raises:
        DataError: RUN is missing, not a directory, not a training run, or has no checkpoint.
    """
    from opticsfree.training import list_checkpoints

    if not run.exists():
        raise DataError(f"{run}: run directory not found")
    if not run.is_dir():
        raise DataError(f"{run}: not a run directory")
    epochs = sorted(int(e) for e in list_checkpoints(run))
    if not epochs:
        raise DataError(f"{run}: no checkpoints (expected {run / 'checkpoints'}/epoch_NNN.pt)")
    return epochs


@command("evaluate", resume_hint=RERUN_TO_REDO)
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `opticsfree train`."),
    split: str = typer.Option("test", "--split", help="Split to score (test, or val)."),
    classifier: Optional[Classifier] = typer.Option(
        None, "--classifier",
        help="prototype: nearest class centroid of the train originals; knn: k nearest train "
             "originals (k chosen on val); threshold: the seed's distance threshold (chosen on "
             "val); head: the classifier head (models trained with ce / ce+triplet). "
             "Default: head for a ce run, prototype otherwise. The default classifier writes "
             "OUT/table.md and table.csv, any other OUT/table_<classifier>.md and .csv."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list with one object per checkpoint, ordered by epoch."),
    figures: bool = typer.Option(True, "--figures/--no-figures",
                                 help="Write OUT/figures/*.png for the last checkpoint."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN; with --captures RUN/eval-<set name>)."),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint",
        help="Only this checkpoint: best (highest validation accuracy), last or an epoch number. "
             "Default: every checkpoint."),
    captures: Optional[Path] = other_captures_option(
        "single-frame and fused accuracy side by side; the prototypes, the kNN gallery and what "
        "is tuned on val stay the run's own."),
    mirror: bool = typer.Option(
        False, "--mirror",
        help="Test-time mirroring: score each capture with its left-right flip averaged in "
             "(refused unless the camera is left-right symmetric); default OUT: RUN/eval-mirror."),
) -> None:
    """Evaluate every checkpoint of RUN (by epoch; one with --checkpoint); write
    OUT/eval_<split>_<classifier>.json and the classifier's tables: OUT/table.md and table.csv
    for the run's default classifier (head for a ce run, prototype otherwise),
    OUT/table_<classifier>.md and .csv for any other, with _<split> added for a split other
    than test (OUT: RUN unless --out)."""
    from opticsfree.evaluation.report import evaluate_models, summary_document
    from opticsfree.training import load_trained
    from opticsfree.utils.document import render_terminal
    from opticsfree.utils.io import check_out_dir
    from opticsfree.utils.threads import single_threaded_openmp

    epochs = run_epochs(run)
    if checkpoint is not None:
        from opticsfree.inference.adapter import resolve_checkpoint

        epochs = [resolve_checkpoint(run, checkpoint)]
    if out is None:
        out = run if captures is None else run / f"eval-{captures.resolve().name}"
        if mirror:  # never overwrite the run's own (unmirrored) evaluation
            out = run / "eval-mirror" if captures is None else out.with_name(out.name + "-mirror")
    out = check_out_dir(out, "a folder for the evaluation") if out != run else out
    if mirror:
        from opticsfree.training.checkpoint import check_mirror, training_run

        cfg = training_run(run).read_config()  # the scored set's camera at the run's size
        note = check_mirror(captures if captures is not None else cfg["captures"], int(cfg["resolved"]["size"]),
                            int(cfg["resolved"]["lensless_channels"]))
        typer.echo(note, err=True)
    with single_threaded_openmp():  # torch + scikit-learn (t-SNE) in one process
        evaluation = evaluate_models((load_trained(run, e, mirror=mirror) for e in epochs), out, split=split,
                                     classifier=classifier, run=run,
                                     metrics=run / "metrics.jsonl", figures=figures,
                                     captures=captures)
    if json_out:
        print_json([r.to_json(detail=False) for r in evaluation.checkpoints])
        return

    render_terminal(summary_document(evaluation))
