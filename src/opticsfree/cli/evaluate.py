"""``opticsfree evaluate RUN``: score every checkpoint of a metric-learning run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from opticsfree.cli.common import RERUN_TO_REDO, command, print_json
from opticsfree.errors import DataError


class ClassifierName(str, Enum):
    """The classifiers ``--classifier`` accepts."""

    prototype = "prototype"
    knn = "knn"
    threshold = "threshold"
    head = "head"


def _fmt(v: object, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


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
    classifier: Optional[ClassifierName] = typer.Option(
        None, "--classifier",
        help="prototype: nearest class centroid of the train originals; knn: k nearest train "
             "originals (k chosen on val); threshold: the seed's distance threshold (chosen on "
             "val); head: the classifier head (models trained with ce / ce+triplet). "
             "Default: head for a ce run, prototype otherwise."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list with one object per checkpoint, ordered by epoch."),
    figures: bool = typer.Option(True, "--figures/--no-figures",
                                 help="Write OUT/figures/*.png for the last checkpoint."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN)."),
) -> None:
    """Evaluate every checkpoint of RUN (by epoch); write OUT/table.md, table.csv and
    OUT/eval_<split>_<classifier>.json (OUT: RUN unless --out)."""
    from opticsfree.evaluation.report import CONVENTIONS, evaluate_models
    from opticsfree.training import load_trained
    from opticsfree.utils.io import check_out_dir
    from opticsfree.utils.threads import single_threaded_openmp

    epochs = run_epochs(run)
    out = run if out is None else check_out_dir(out, "a folder for the evaluation")
    with single_threaded_openmp():  # torch + scikit-learn (t-SNE) in one process
        evaluation = evaluate_models((load_trained(run, e) for e in epochs), out, split=split,
                                     classifier=classifier and classifier.value, run=run,
                                     metrics=run / "metrics.jsonl", figures=figures)
    results = evaluation.checkpoints
    clf = evaluation.classifier
    if json_out:
        print_json([r.to_json(detail=False) for r in results])
        return

    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped / captured output: no need to squeeze into 80 columns
        console = Console(width=max(console.width, 120))
    has_seed = any(r.seed for r in results)
    table = Table(title=f"{run.name}: {clf} classifier, {split} split", box=box.SIMPLE_HEAD,
                  caption="Percent. Precision/recall/F1 support-weighted (as in the seed's "
                          "tables); macro-F1 unweighted; 95% CI: bootstrap, 1000 resamples; "
                          f"P@1 and MAP@R: lensless queries vs {split} originals"
                          + ("; Seed: the seed's published accuracy for this loss, images and "
                             "epochs" if has_seed else "") + ".")
    cols = ["Epoch", "Accuracy", "95% CI", "Precision", "Recall", "F1", "macro-F1", "P@1",
            "MAP@R"] + (["Seed acc."] if has_seed else [])
    for c in cols:
        table.add_column(c, justify="right")
    for r in results:
        lo, hi = r.accuracy_ci
        table.add_row(str(r.epoch), _fmt(r.accuracy), f"{lo:.2f}-{hi:.2f}",
                      _fmt(r.precision), _fmt(r.recall), _fmt(r.f1),
                      _fmt(r.macro_f1), _fmt(r.precision_at_1), _fmt(r.map_at_r),
                      *([_fmt(r.seed.accuracy) if r.seed else "-"] if has_seed else []))
    console.print(table)
    if clf in ("knn", "threshold"):
        extra = Table(title=f"{clf}: parameters chosen on val", box=box.SIMPLE_HEAD)
        params: list[Any] = [r.params for r in results]
        if clf == "knn":
            cols = ["Epoch", "k", "val acc. at k", "gallery"]
            rows = [[str(r.epoch), str(p.k), _fmt(p.val_accuracy_by_k[p.k]), str(p.gallery_size)]
                    for r, p in zip(results, params)]
        else:
            cols = ["Epoch", "t", "val verif.", f"{split} verif.", "TAR", "FAR", "EER",
                    "reject", "acc. w/ reject"]
            rows = [[str(r.epoch), _fmt(p.threshold, 3), _fmt(p.val_verification_accuracy),
                     _fmt(p.verification_accuracy), _fmt(p.tar), _fmt(p.far), _fmt(p.eer),
                     _fmt(p.reject_rate), _fmt(p.accuracy_with_reject)]
                    for r, p in zip(results, params)]
        for c in cols:
            extra.add_column(c, justify="right")
        for row in rows:
            extra.add_row(*row)
        console.print(extra)
    console.print(f"{clf}: {CONVENTIONS[clf]}.", style="dim")
    md, csv_path = evaluation.table_paths
    console.print(f"wrote {md}, {csv_path}, {evaluation.json_path}"
                  + (f", {out / 'figures'}/" if figures else ""))
