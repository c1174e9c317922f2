"""``opticsfree evaluate RUN``: score every checkpoint of a metric-learning run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from opticsfree.cli.common import RERUN_TO_REDO, command, print_json


class ClassifierName(str, Enum):
    """The classifiers ``--classifier`` accepts."""

    prototype = "prototype"
    knn = "knn"
    threshold = "threshold"
    head = "head"


def _fmt(v: object, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


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
                                 help="Write RUN/figures/*.png for the last checkpoint."),
) -> None:
    """Evaluate every checkpoint of RUN (by epoch); write RUN/table.md, table.csv and
    RUN/eval_<split>_<classifier>.json."""
    from opticsfree.evaluation.report import CONVENTIONS, evaluate_run, summarize, table_paths
    from opticsfree.utils.threads import single_threaded_openmp

    with single_threaded_openmp():  # torch + scikit-learn (t-SNE) in one process
        results = evaluate_run(run, split=split, classifier=classifier and classifier.value,
                               figures=figures)
    clf = results[0]["classifier"]
    if json_out:
        print_json([summarize(r) for r in results])
        return

    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped / captured output: no need to squeeze into 80 columns
        console = Console(width=max(console.width, 120))
    has_seed = any(r.get("seed") for r in results)
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
        lo, hi = r["accuracy_ci"]
        table.add_row(str(r["epoch"]), _fmt(r["accuracy"]), f"{lo:.2f}-{hi:.2f}",
                      _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]),
                      _fmt(r["macro_f1"]), _fmt(r["precision_at_1"]), _fmt(r["map_at_r"]),
                      *([_fmt(r["seed"]["accuracy"]) if r.get("seed") else "-"]
                        if has_seed else []))
    console.print(table)
    if clf in ("knn", "threshold"):
        extra = Table(title=f"{clf}: parameters chosen on val", box=box.SIMPLE_HEAD)
        if clf == "knn":
            cols = ["Epoch", "k", "val acc. at k", "gallery"]
            rows = [[str(r["epoch"]), str(r["k"]), _fmt(r["val_accuracy_by_k"][str(r["k"])]),
                     str(r["gallery_size"])] for r in results]
        else:
            cols = ["Epoch", "t", "val verif.", f"{split} verif.", "TAR", "FAR", "EER",
                    "reject", "acc. w/ reject"]
            rows = [[str(r["epoch"]), _fmt(r["threshold"], 3),
                     _fmt(r["val_verification_accuracy"]), _fmt(r["verification_accuracy"]),
                     _fmt(r["tar"]), _fmt(r["far"]), _fmt(r["eer"]), _fmt(r["reject_rate"]),
                     _fmt(r["accuracy_with_reject"])] for r in results]
        for c in cols:
            extra.add_column(c, justify="right")
        for row in rows:
            extra.add_row(*row)
        console.print(extra)
    console.print(f"{clf}: {CONVENTIONS[clf]}.", style="dim")
    md, csv_path = table_paths(run, split)
    console.print(f"wrote {md}, {csv_path}, {run / f'eval_{split}_{clf}.json'}"
                  + (f", {run / 'figures'}/" if figures else ""))
