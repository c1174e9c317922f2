"""``opticsfree bayes``'s outputs: the report file, its figures and the terminal summary.

:func:`write_report` writes a :class:`~opticsfree.bayes.model.BayesResult` into a folder OUT
(``opticsfree bayes`` uses the run directory):

- ``OUT/bayes_<tag>.json``: the whole result (``<tag>`` is the split, plus ``-<set name>`` for
  another capture set);
- ``OUT/figures/bayes_<tag>_bars.png``, ``..._reliability.png`` and, with more than one frame
  per scene, ``..._frames.png``.

:func:`bayes_analysis` is the one call that does both halves: :func:`analyse_model` on a loaded
model, then :func:`write_report`. :func:`summary_document` is the human-readable summary.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from opticsfree.bayes.model import BayesResult, analyse_model
from opticsfree.evaluation.contract import TrainedEmbedder
from opticsfree.utils.document import Document, Paragraph, Row, Table
from opticsfree.utils.io import write_json


def report_path(out: str | os.PathLike, result: BayesResult) -> Path:
    """``OUT/bayes_<tag>.json``."""
    return Path(out) / f"bayes_{result.tag}.json"


def write_report(result: BayesResult, out: str | os.PathLike, figures: bool = True) -> BayesResult:
    """Write the figures (optional) and ``bayes_<tag>.json`` into ``out``.

    Args:
        result: from :func:`opticsfree.bayes.model.analyse_model`.
        out: the output folder.
        figures: write the figures under ``OUT/figures``.

    Returns:
        ``result``, with ``outputs`` listing the written files (figures first, then the JSON,
        which lists itself).
    """
    out = Path(out)
    outputs: list[str] = []
    if figures:
        from opticsfree.bayes.figures import write_figures

        outputs += [str(p) for p in write_figures(out / "figures", result, result.images,
                                                  result.tag)]
    path = report_path(out, result)
    outputs.append(str(path))
    result.outputs = outputs
    write_json(path, result.to_json())
    return result


def bayes_analysis(model: TrainedEmbedder, out: str | os.PathLike, *, figures: bool = True,
                   **options: Any) -> BayesResult:
    """:func:`~opticsfree.bayes.model.analyse_model` on ``model``, written to ``out``.

    Args:
        model: the loaded checkpoint.
        out: the output folder.
        figures: write the figures under ``OUT/figures``.
        **options: :func:`~opticsfree.bayes.model.analyse_model`'s keyword arguments
            (``prior``, ``frames``, ``split``, ``likelihood``, ``captures``, ``run``).

    Returns:
        The written result.
    """
    return write_report(analyse_model(model, **options), out, figures=figures)


def summary_document(result: BayesResult) -> Document:
    """The human-readable summary for the command line (``opticsfree bayes`` prints it with
    :func:`~opticsfree.utils.document.render_terminal`).

    The run, epoch, split, likelihood and prior; the number of captures, scenes and frames; the
    temperature; a table of MAP accuracy, NLL, Brier, ECE and the two KL divergences at T = 1
    and at the fitted T; with more than one frame per scene, accuracy and KL by number of fused
    frames and the mean-of-frames baseline; the written files.

    Args:
        result: from :func:`bayes_analysis` (or :func:`~opticsfree.bayes.model.analyse_model`:
            then no files are listed).

    Returns:
        The document.
    """
    a = result.analysis
    b = a.before
    fit = a.temperature_fit
    t_note = "" if fit.fitted else " (no validation rows: not fitted)"

    def f(v: Any, fmt: str = ".4f") -> str:
        return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)

    doc = Document(f"run {result.run}  epoch {result.epoch}  split {result.split}  "
                   f"likelihood {result.likelihood}  prior {result.prior}", [
        Paragraph(f"{a.n} captures, {a.n_scenes} scenes, {a.frames_per_scene} frame(s) per scene"),
        Paragraph(f"temperature {f(a.temperature, '.4g')}{t_note}"
                  + ("  (at the search bound)" if fit.at_bound else "")),
        Table(["", "T = 1", "fitted T"],
              [Row([label, f(getattr(b, key), fmt), f(getattr(a.fitted, key), fmt)])
               for key, label, fmt in [
                   ("accuracy", "MAP accuracy (%)", ".2f"), ("nll", "NLL (nats)", ".4f"),
                   ("brier", "Brier", ".4f"), ("ece", "ECE (15 bins)", ".4f"),
                   ("kl_posterior_prior", "KL(posterior||prior)", ".4f"),
                   ("kl_label_meanposterior", "KL(labels||mean posterior)", ".4f")]],
              align=["left", "right", "right"]),
    ])
    if a.frames_per_scene > 1:
        doc.blocks.append(Table(["frames", "accuracy (%)", "KL (nats)"],
                                [Row([r.k, f(r.accuracy, ".2f"), f(r.kl)]) for r in a.frames],
                                align=["right"] * 3))
        if a.mean_frame is not None:
            mf = a.mean_frame
            doc.blocks.append(Paragraph(f"mean of {mf.k} frames: accuracy {f(mf.accuracy, '.2f')} "
                                        f"%, KL {f(mf.kl)}"))
    doc.blocks += [Paragraph(f"wrote {p}") for p in result.outputs]
    return doc
