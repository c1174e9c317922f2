"""Capture-set commands: ``check``, ``import``, ``tuples`` (thin wrappers over opticsfree.captures)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from opticsfree.cli.common import FRACTION, SEED, command, print_json


@command("check", help="Validate a capture set and name every bad file. Exit status 0 when the "
                       "set is valid, 1 when it is not (problems listed).")
def check_cmd(
    directory: Path = typer.Argument(..., metavar="DIR", help="The capture set directory."),
    json_out: bool = typer.Option(False, "--json",
                                  help='Print {"ok", "n_rows", "problems", "splits", "sizes"} as JSON.'),
    no_decode: bool = typer.Option(False, "--no-decode",
                                   help="Only read headers and end markers (faster; misses some "
                                        "corrupt pixel data)."),
) -> None:
    from opticsfree.captures.check import check_capture_set, format_report

    report = check_capture_set(directory, decode=not no_decode)
    if json_out:
        print_json(report.to_json())
    else:
        typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(1)


@command("import", help="Import real lensless captures and their displayed originals as a "
                        "capture set, pairing files by stem (cat_001.jpeg with cat_001.png). "
                        "Labels come from the originals' class folders "
                        "(originals/[train|test|val/]<class>/<id>.png) or from --labels; pairs "
                        "without a split from them go to --split (train), and --test-fraction "
                        "holds out a stratified share of the train scenes as test. Every "
                        "unmatched file is listed and written to OUT/unmatched.txt; a class "
                        "folder without images is named in a warning.")
def import_cmd(
    lensless: Path = typer.Option(..., "--lensless", metavar="DIR",
                                  help="Directory of captures (searched recursively)."),
    originals: Path = typer.Option(..., "--originals", metavar="DIR",
                                   help="Directory of the displayed originals (searched recursively)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="The capture set to write."),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV",
                                          help="CSV with columns id,label_name[,split]; replaces "
                                               "the class folders as the source of labels."),
    split: str = typer.Option("train", "--split", metavar="NAME",
                              help="Split of pairs whose split no folder or CSV gives."),
    notes: str = typer.Option("", "--notes", metavar="TEXT",
                              help="Notes on the camera, stored in the manifest."),
    test_fraction: float = typer.Option(
        0.0, "--test-fraction", **FRACTION, metavar="F",
        help="Hold out this share of the train scenes as the test split (which quality and "
             "camera info --captures need), stratified by class and seeded by --seed. "
             "0: every such scene stays in train."),
    seed: int = typer.Option(0, "--seed", **SEED, metavar="S",
                             help="Random seed of the --test-fraction split."),
) -> None:
    from opticsfree.captures.importer import import_captures

    rep = import_captures(lensless, originals, out, labels_csv=labels, notes=notes, split=split,
                          test_fraction=test_fraction, seed=seed)
    splits = ", ".join(f"{k}={v}" for k, v in rep.splits.items())
    typer.echo(f"imported {rep.n_imported} scenes ({splits}) in {len(rep.classes)} classes "
               f"to {rep.out}")
    for title, entries in rep.unmatched_sections:
        if entries:
            typer.echo(f"{title}: {len(entries)}")
            for e in entries:
                typer.echo(f"  {e}")
    if rep.n_unmatched:
        typer.echo(f"{rep.n_unmatched} unmatched input(s) listed in {rep.out / 'unmatched.txt'}")
    for p in rep.problems:
        typer.echo(f"warning: {p['file']}: {p['problem']}", err=True)
    empty = rep.empty_folders_warning(originals)
    if empty:
        typer.echo(f"warning: {empty}", err=True)
    if "test" not in rep.splits:  # the last line: what the set lacks and how to get it
        typer.echo(f"warning: {rep.out} has no test split, which quality and camera info "
                   "--captures need; rerun with --test-fraction F (e.g. 0.2) to hold out a "
                   "stratified share of the train scenes as test, or give test scenes by "
                   "originals/test/ folders or --labels", err=True)


@command("tuples", help="Write DIR/tuples_<split>.csv: one (anchor lensless, positive original, "
                        "close positive of the same class, negative of another class) row per "
                        "capture, reproducible from --seed.")
def tuples_cmd(
    directory: Path = typer.Argument(..., metavar="DIR", help="The capture set directory."),
    split: str = typer.Option("train", "--split", metavar="NAME", help="Which split."),
    seed: int = typer.Option(0, "--seed", **SEED, metavar="S", help="Random seed of the draws."),
) -> None:
    from opticsfree.captures.tuples import make_tuples, read_tuples

    path = make_tuples(directory, split=split, seed=seed)
    typer.echo(f"wrote {len(read_tuples(path))} tuples to {path}")
