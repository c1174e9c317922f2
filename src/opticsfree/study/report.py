"""The study report: ``OUT/report.html`` (self-contained), ``OUT/report.md``, ``OUT/results.json``.

:func:`write_report` collects the finished stages' numbers once
(:func:`~opticsfree.study.results.collect_results`), draws the report's own figures
(:func:`draw_figures`), builds the document section by section (one ``build_<section>``
function each, :func:`build_document`) and renders it with :mod:`opticsfree.utils.document`
to Markdown (figures linked by relative path) and HTML (figures embedded as base64 PNG, no
scripts, no external resources); results.json is :meth:`StudyResults.to_json`. Every table
states its conventions underneath (units, averaging, value ranges).

Sections: the camera and its measured degradation beside the seed's published numbers
(:mod:`opticsfree.seed_study`); sample grids; Tables 1-4 in the seed's layout (Accuracy,
Precision, Recall, F1score, Epochs) with the seed's published rows beside ours; other losses;
baselines (cross-entropy, clean-image upper bound); all classifiers; reconstruction quality
beside the seed's CycleGAN; Bayes with KL beside the seed's; figures of every run; provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from opticsfree import __version__, seed_study
from opticsfree.errors import OpticsfreeError
from opticsfree.study.base import TEST, StageContext
from opticsfree.study.config import LENSLESS, StudyConfig
from opticsfree.study.results import (CONV_QUALITY, METHOD_NAMES, MetricRow, Quality,
                                      StudyResults, collect_results, images_name)
from opticsfree.utils.document import (BulletList, Cell, Code, Document, Note, Paragraph, Row,
                                       Section, Table, figure_if_present, render_html,
                                       render_markdown)
from opticsfree.utils.io import write_bytes, write_json, write_text

TABLE_COLUMNS = ["Model", "Accuracy", "Precision", "Recall", "F1score", "Epochs", "Accuracy 95% CI"]

CONV_METRICS = ("Percent (0-100). Precision, recall and F1 are support-weighted averages over the "
                "classes, as in the seed's tables (so weighted recall equals accuracy); 95% CI: "
                "percentile bootstrap over the test rows. Classifier: {clf}. Ours: the {split} "
                "split of {data} ({n} captures); seed rows: the seed study's published numbers on "
                "the CIFAR-10 test set{cmp}.")

#: Captions of the run figures, by file-name prefix.
RUN_FIGURE_CAPTIONS = {
    "threshold": "Threshold for lensless images: distance distributions of matching and "
                 "non-matching pairs with the threshold chosen on val",
    "confusion": "Confusion matrix (test)",
    "tsne": "t-SNE map of lensless (dots) and original (triangles) test embeddings",
    "learning_curves": "Learning curves",
    "bayes_test_bars": "Prior, likelihood and posterior for example test captures",
    "bayes_test_reliability": "Reliability diagrams before and after temperature fitting",
    "bayes_test_frames": "Accuracy and KL against the number of fused frames",
}
ROLE_NAMES = {"main": "main run", "baseline": "cross-entropy baseline",
              "upper-bound": "clean-image upper bound", "recipe": "our recipe ([baselines] recipe)"}


# ----------------------------------------------------------------------------------------------
# formatting


def _f(v: Any, fmt: str = ".2f") -> str | None:
    """``v`` formatted as a number (None stays None, text stays text)."""
    if v is None:
        return None
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return str(v)


def _pm(mean: float | None, std: float | None, fmt: str) -> str | None:
    """``mean +/- std`` (or the mean alone)."""
    if mean is None:
        return None
    return f"{format(mean, fmt)} +/- {format(std, fmt)}" if std is not None else format(mean, fmt)


def _ci(r: MetricRow) -> str | None:
    """The accuracy's 95% interval ``lo-hi``."""
    ci = r.get("accuracy_ci")
    if not ci or len(ci) != 2 or ci[0] is None:
        return None
    return f"{ci[0]:.2f}-{ci[1]:.2f}"


def _dataset(results: StudyResults) -> str:
    return results.dataset or "?"


def _comparability(results: StudyResults) -> str:
    """Appended to the metric conventions when the seed's numbers are not comparable."""
    dataset = _dataset(results)
    return "" if dataset == seed_study.DATASET else f" (not comparable: this study uses {dataset})"


def _n_test(results: StudyResults) -> int | None:
    q = results.lensless.quality
    return q.n if q else None


def _quality_cells(q: Quality) -> list[Cell]:
    """PSNR, SSIM, MSE [0, 1], MSE (0-255) of measured images."""
    return [_pm(q.psnr, q.psnr_std, ".2f"), _pm(q.ssim, q.ssim_std, ".3f"), _f(q.mse, ".4f"),
            _f(q.mse_255, ".1f")]


def _published_cells(q: seed_study.PublishedQuality) -> list[Cell]:
    """PSNR, SSIM, (no MSE on [0, 1]), MSE as published."""
    return [_f(q.psnr), _f(q.ssim), None, f"{q.mse} (as published)"]


def metric_rows(label: str, results: list[MetricRow]) -> list[Row]:
    """One row per checkpoint in the seed's layout (:data:`TABLE_COLUMNS`)."""
    return [Row([label, _f(r["accuracy"]), _f(r["precision"]), _f(r["recall"]), _f(r["f1"]),
                 r["epoch"], _ci(r)]) for r in results]


def seed_rows(rows: list[seed_study.SeedRow]) -> list[Row]:
    """The seed's published rows in the same layout, marked as reference rows."""
    return [Row([r.label, _f(r.accuracy), _f(r.precision), _f(r.recall), _f(r.f1), r.epochs, None],
                reference=True) for r in rows]


# ----------------------------------------------------------------------------------------------
# figures drawn by the report


@dataclass
class ReportFigures:
    """The figures the report shows: its own sample grids and each run's figures.

    Attributes:
        samples: originals, lensless captures and point responses.
        upper_bound_samples: the same for the upper-bound set.
        reconstructions: original | lensless | each reconstruction.
        runs: run label -> its evaluation and Bayes figures.
        problems: one line per figure that could not be drawn.
    """

    samples: Path | None = None
    upper_bound_samples: Path | None = None
    reconstructions: Path | None = None
    runs: dict[str, list[Path]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _draw(problems: list[str], what: str, fn: Callable[[], Path]) -> Path | None:
    """``fn()``, or None with a line in ``problems`` when the set cannot be read."""
    try:
        return fn()
    except OpticsfreeError as e:
        problems.append(f"{what} not drawn: {e}")
        return None


def draw_figures(ctx: StageContext, results: StudyResults, d: Path) -> ReportFigures:
    """Draw the sample grids into ``d`` and gather the figures of every run.

    A grid whose capture set cannot be read (an :class:`OpticsfreeError`) is left out and named
    in ``problems`` (and logged); any other error propagates and fails the report stage.
    """
    from opticsfree.captures.show import compare_capture_sets, show_capture_set

    cfg = ctx.cfg
    figs = ReportFigures()
    n, seed = cfg.report.samples, cfg.study.seed
    figs.samples = _draw(figs.problems, "the sample grid", lambda: show_capture_set(
        results.lensless.captures, d / "samples_lensless.png", split=TEST, n=n, seed=seed))
    ub = results.upper_bound
    if ub is not None:
        figs.upper_bound_samples = _draw(figs.problems, "the upper-bound sample grid", lambda: show_capture_set(
            ub.captures, d / "samples_upper_bound.png", split=TEST, n=n, seed=seed))
    recon = {"lensless": results.lensless.captures}
    recon.update({METHOD_NAMES.get(m, m): results.captures[m].captures for m in cfg.reconstruct.methods
                  if m in results.captures})
    if len(recon) > 1:
        figs.reconstructions = _draw(figs.problems, "the reconstruction grid", lambda: compare_capture_sets(
            recon, d / "reconstructions.png", split=TEST, n=n, size=cfg.captures.quality_size, seed=seed))
    for p in figs.problems:
        ctx.log(f"  report: {p}")
    for name, o in ctx.outputs.items():
        if name.startswith("evaluate/"):
            label = name.split("/", 1)[1]
            paths = [Path(f) for f in o.get("figures", [])]
            bayes = ctx.outputs.get(f"bayes/{label}") or {}
            paths += [Path(f) for f in bayes.get("figures", []) if Path(f) not in paths]
            figs.runs[label] = paths
    return figs


# ----------------------------------------------------------------------------------------------
# the sections


def build_intro(results: StudyResults) -> list[Paragraph | Note]:
    """What the study is, when and where it ran; a warning when the dataset is not CIFAR-10."""
    prov = results.provenance
    m = prov.machine
    blocks: list[Paragraph | Note] = [Paragraph(
        f"Study {results.study!r}: {_dataset(results)} shown on a display and captured by a bare "
        f"sensor (camera {results.camera.name!r}); deep metric learning on the captures and on "
        f"reconstructions, compared with the seed study's published numbers. Generated "
        f"{results.created} by opticsfree {__version__} on {m.hostname} ({m.cpu_count} CPUs, "
        f"device {m.device}); total stage wall time {prov.wall_s_total:.0f} s.")]
    if _dataset(results) != seed_study.DATASET:
        blocks.append(Note(f"This study uses {_dataset(results)}, not CIFAR-10: the seed's numbers "
                           f"are shown for reference and are not directly comparable."))
    return blocks


def build_camera(results: StudyResults, cfg: StudyConfig) -> Section:
    """The camera's parameters and the degradation of its captures, beside the seed's."""
    sec = Section("Camera and measured degradation")
    cam = results.camera.parameters
    lens = results.lensless
    if results.camera.source == "simulate":
        geo = cam.get("geometry") or {}
        facts = [f"camera: {cam.get('name')} ({cam.get('type', '?')}): {cam.get('description', '')}".strip()]
        facts += [f"geometry: {', '.join(f'{k} = {v}' for k, v in geo.items())}"] if geo else []
        facts += [f"captures: {lens.splits} scenes per split, {lens.frames} frame(s) per scene, "
                  f"{lens.channels} channel(s), simulation seed {lens.seed}"]
        sec.blocks.append(BulletList(facts))
    else:
        sec.blocks.append(BulletList([f"existing capture set {lens.captures} "
                                      f"({cam.get('type', 'simulated')}; {lens.splits} scenes per split)"]))
    rows = [Row(["seed study (published)", *_published_cells(seed_study.DEGRADATION), None], reference=True)]
    if lens.quality:
        rows.append(Row([f"ours: {results.camera.name} camera", *_quality_cells(lens.quality),
                         lens.quality.n]))
    ub = results.upper_bound
    if ub is not None and ub.quality:
        rows.append(Row([f"ours: upper bound ({cfg.baselines.upper_bound_camera} camera)",
                         *_quality_cells(ub.quality), ub.quality.n]))
    sec.blocks += [Table(["Captures vs originals", "PSNR (dB)", "SSIM", "MSE [0,1]", "MSE (0-255)", "n"],
                         rows, "Degradation of the lensless captures (test split)"),
                   Note(CONV_QUALITY.format(size=results.quality_size))]
    return sec


def build_samples(figures: ReportFigures, cfg: StudyConfig) -> Section:
    """The sample grids: lensless set, upper-bound set, reconstructions."""
    sec = Section("Sample captures")
    sec.blocks += figure_if_present(figures.samples, "Test originals (top), their lensless captures "
                                                     "(middle) and the camera's point responses (bottom)")
    sec.blocks += figure_if_present(figures.upper_bound_samples, f"The upper-bound set: the same scenes "
                                    f"through the {cfg.baselines.upper_bound_camera!r} camera")
    sec.blocks += figure_if_present(figures.reconstructions, "Original | lensless capture | each "
                                                             "reconstruction, on the same test scenes")
    sec.blocks += [Note(p) for p in figures.problems]
    return sec


def build_seed_table(results: StudyResults, cfg: StudyConfig, table: seed_study.SeedTable) -> Section:
    """One of Tables 1-4: our rows for every checkpoint of each matching run, then the seed's."""
    t = next(x for x in results.tables if x.table == table)
    title = f"Table {table.number}: {table.loss} loss, {table.images} images"
    sec = Section(title)
    if not t.ours:
        why = (f"{table.loss} is not in [train] losses" if table.loss not in cfg.train.losses else
               "no reconstruction method in [reconstruct] methods / [train] images")
        sec.blocks += [Paragraph(f"Not run in this study ({why}); the seed's published rows:"),
                       Table(TABLE_COLUMNS, seed_rows(t.seed), title)]
        return sec
    for label, rows in t.ours.items():
        run = results.runs[label]
        clf = run.primary_classifier
        ours = metric_rows(f"ours ({table.loss}, {images_name(run.images)}, {clf})", rows)
        sec.blocks += [Table(TABLE_COLUMNS, ours + seed_rows(t.seed),
                             f"{title}: ours ({images_name(run.images)}) and the seed"),
                       Note(CONV_METRICS.format(clf=clf, split=TEST, data=_dataset(results),
                                                n=rows[-1].get("n"), cmp=_comparability(results)))]
    return sec


def build_other_losses(results: StudyResults) -> Section | None:
    """Main runs of losses the seed has no table for (None when there are none)."""
    seed_losses = {t.loss for t in seed_study.TABLES}
    others = [r for r in results.runs.values() if r.role == "main" and r.loss not in seed_losses]
    if not others:
        return None
    rows = [row for r in others
            for row in metric_rows(f"ours ({r.name}, {r.primary_classifier})", r.primary)]
    return Section("Other losses", [
        Table(TABLE_COLUMNS, rows, "Losses without a seed table"),
        Note(CONV_METRICS.format(clf="as named in each row", split=TEST, data=_dataset(results),
                                 n=_n_test(results), cmp=_comparability(results)))])


def build_seed_tables(results: StudyResults, cfg: StudyConfig) -> Section:
    """Tables 1-4 in the seed's layout, then the other losses."""
    sec = Section("Tables 1-4 (the seed's layout)",
                  [build_seed_table(results, cfg, t) for t in seed_study.TABLES])
    other = build_other_losses(results)
    if other is not None:
        sec.blocks.append(other)
    return sec


def build_baselines(results: StudyResults, cfg: StudyConfig) -> Section:
    """The final checkpoint of every run: main runs, cross-entropy, clean-image upper bound."""
    rows = []
    for r in results.runs.values():
        fin = r.final(r.primary_classifier)
        if fin is None:
            continue
        rows.append(Row([r.name, ROLE_NAMES[r.role], r.primary_classifier, _f(fin["accuracy"]),
                         _f(fin["precision"]), _f(fin["recall"]), _f(fin["f1"]), fin["epoch"], _ci(fin)]))
    sec = Section("Baselines", [Table(
        ["Run", "Role", "Classifier", "Accuracy", "Precision", "Recall", "F1score", "Epochs",
         "Accuracy 95% CI"], rows, "Final checkpoint of every run (same backbone, epochs and budget)")])
    sec.blocks.append(Note(CONV_METRICS.format(
        clf="as named in each row (head: argmax of the cross-entropy head's logits)", split=TEST,
        data=_dataset(results), n=_n_test(results), cmp=_comparability(results))))
    if cfg.upper_bound_losses():
        ub = results.upper_bound
        if ub is not None:
            sec.blocks.append(Note(
                f"Clean-image upper bound: the trainer has no originals-only mode, so the same scenes "
                f"are simulated through the {cfg.baselines.upper_bound_camera!r} camera (a lens: "
                f"{_f(ub.quality.psnr if ub.quality else None)} dB PSNR against the originals) and "
                f"the same backbone, loss and schedule are trained and tested on those near-clean "
                f"captures."))
        else:
            sec.blocks.append(Note("Clean-image upper bound: not run (the study uses an existing "
                                   "capture set, so there is no dataset to re-capture through a lens)."))
    return sec


def _classifier_notes(clf: str, fin: MetricRow) -> str | None:
    extra = []
    if clf == "knn":
        extra.append(f"k = {fin.get('k')}")
    if clf == "threshold":
        extra.append(f"t = {_f(fin.get('threshold'), '.3f')}, verification "
                     f"{_f(fin.get('verification_accuracy'))}%, EER {_f(fin.get('eer'))}%, "
                     f"reject {_f(fin.get('reject_rate'))}%")
    return "; ".join(extra) or None


def build_classifiers(results: StudyResults) -> Section:
    """Every classifier of every run at the final checkpoint, with retrieval metrics."""
    rows = []
    for r in results.runs.values():
        for clf in r.results:
            fin = r.final(clf)
            if fin is None:
                continue
            rows.append(Row([r.name, clf, _f(fin["accuracy"]), _f(fin.get("macro_f1")),
                             _f(fin.get("precision_at_1")), _f(fin.get("map_at_r")), fin["epoch"],
                             _classifier_notes(clf, fin)]))
    return Section("Classifiers", [
        Table(["Run", "Classifier", "Accuracy", "Macro F1", "Precision@1", "MAP@R", "Epochs", "Notes"],
              rows, "Every classifier at the final checkpoint"),
        Note("Percent. prototype: nearest class centroid of the train-original embeddings; knn: "
             "k nearest train originals, k chosen on val; threshold: the seed's distance threshold "
             "chosen on val (closed-set accuracy; verification accuracy/EER on (capture, class "
             "prototype) pairs; reject: captures farther than t from every prototype); head: the "
             "cross-entropy head. Precision@1 and MAP@R: retrieval of the test originals from the "
             "test captures.")])


def build_reconstruction(results: StudyResults, cfg: StudyConfig) -> Section:
    """Reconstructions against the originals beside the seed's, and how each method trained."""
    rows = [Row(["seed: lensless (published)", *_published_cells(seed_study.DEGRADATION)],
                reference=True),
            Row(["seed: CycleGAN (published)", *_published_cells(seed_study.CYCLEGAN)],
                reference=True)]
    for kind, q in results.reconstruction_quality.items():
        if q is None:
            continue
        name = "lensless captures" if kind == LENSLESS else METHOD_NAMES.get(kind, kind)
        rows.append(Row([f"ours: {name}", *_quality_cells(q)]))
    sec = Section("Reconstruction quality", [
        Table(["Images vs originals", "PSNR (dB)", "SSIM", "MSE [0,1]", "MSE (0-255)"], rows,
              "Reconstructions against the originals (test split)"),
        Note(CONV_QUALITY.format(size=results.quality_size))])
    if results.reconstruction_training:
        rows = [Row([METHOD_NAMES.get(m, m), _options_cell(cfg.reconstruct.settings_for(m)["options"]),
                     t.epochs, _f(t.seconds_per_epoch, ".1f"),
                     _f(t.images_per_s, ".1f"), _f(t.val_psnr), _f(t.val_ssim, ".3f")])
                for m, t in results.reconstruction_training.items()]
        sec.blocks += [
            Table(["Method", "Options", "Epochs", "Seconds per epoch", "Images/s", "Val PSNR (dB)",
                   "Val SSIM"], rows, "Reconstruction training"),
            Note("Measured during this study's run; validation: the held-out part of the train split "
                 "at the method's training size (last epoch). Options: as set in [reconstruct.method.NAME] "
                 "(docs/reconstruction.md; front_end = true: the method starts from the camera's inverse).")]
    if not cfg.reconstruct.methods:
        sec.blocks.append(Paragraph("No reconstruction method in this study ([reconstruct] methods is empty)."))
    return sec


def _options_cell(options: dict) -> str:
    """``k=v, ...`` of a method's options as the config gives them ("defaults" when none)."""
    if not options:
        return "defaults"
    return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items())


def _frame_rows(results: StudyResults) -> list[Row]:
    rows = []
    for b in results.bayes.values():
        if (b.get("frames_per_scene") or 1) <= 1:
            continue
        name = f"{b['loss']}, {images_name(b['images'])}"
        for fr in b.get("frames") or []:
            rows.append(Row([name, fr["k"], _f(fr["accuracy"]), _f(fr["kl"], ".3f")]))
        mf = b.get("mean_frame")
        if mf:
            rows.append(Row([name, f"mean of {mf['k']} frames", _f(mf["accuracy"]), _f(mf["kl"], ".3f")]))
    return rows


def build_bayes(results: StudyResults) -> Section:
    """Posterior quality and KL of every run beside the seed's KL; multi-frame fusion."""
    sec = Section("Bayesian inference")
    if not results.bayes:
        sec.blocks.append(Paragraph("The Bayes stage is disabled in this study ([bayes] enabled = false)."))
        return sec
    rows = [Row([f"{b['loss']}, {images_name(b['images'])}", b.get("likelihood"), b.get("prior"),
                 b.get("epoch"), _f(b.get("temperature"), ".4g"), _f(b.get("accuracy")),
                 _f(b.get("nll"), ".3f"), _f(b.get("ece"), ".3f"), _f(b.get("brier"), ".3f"),
                 _f(b.get("kl_posterior_prior"), ".3f"), _f(b.get("kl_label_meanposterior"), ".3f"),
                 _f(b.get("seed_kl"))]) for b in results.bayes.values()]
    sec.blocks += [
        Table(["Run", "Likelihood", "Prior", "Epoch", "T", "MAP accuracy", "NLL", "ECE", "Brier",
               "KL(post||prior)", "KL(labels||mean post)", "seed KL"], rows,
              "Posterior = prior x likelihood, temperature fitted on val"),
        Note("Natural logs (nats). KL(post||prior): mean over test captures of "
             "KL(posterior || prior); KL(labels||mean post): KL(empirical class distribution || "
             "mean posterior). MAP accuracy in percent; NLL in nats; ECE with 15 equal-width "
             "bins; Brier summed over classes (0-2). seed KL: the seed's reported value for the "
             "same loss and image kind (which KL it is was not stated; docs/bayes.md argues it "
             "is closest to KL(posterior || prior)).")]
    frames = _frame_rows(results)
    if frames:
        sec.blocks += [Table(["Run", "Frames fused", "MAP accuracy", "KL(post||prior)"], frames,
                             "Multi-frame evidence: the posterior after frame k is the prior of frame k+1"),
                       Note("Percent and nats, per scene.")]
    return sec


def run_figure_caption(path: Path) -> str:
    """The caption of a run figure, from its file name (the file stem when unknown)."""
    stem = path.stem
    return next((c for k, c in RUN_FIGURE_CAPTIONS.items() if stem.startswith(k)), stem)


def build_run_figures(results: StudyResults, figures: ReportFigures) -> Section:
    """One subsection per run with its evaluation and Bayes figures."""
    sec = Section("Figures of every run")
    for label, paths in figures.runs.items():
        run = results.runs[label]
        sub = Section(run.name)
        for p in paths:
            sub.blocks += figure_if_present(p, f"{run_figure_caption(p)} ({run.name})")
        sec.blocks.append(sub)
    return sec


def build_provenance(results: StudyResults) -> Section:
    """Versions, machine, data, seeds, config file, wall time per stage, the config."""
    prov = results.provenance
    m = prov.machine
    sec = Section("Provenance", [BulletList([
        f"opticsfree {prov.package_version}, Python {prov.python}, torch {prov.torch}",
        f"machine: {m.hostname} ({m.processor}, {m.cpu_count} CPUs), {prov.platform}, device "
        f"{m.device}" + (f" ({m.cuda})" if m.cuda else ""),
        f"dataset: {prov.dataset}; copy read: {prov.data_copy}",
        f"capture set: {prov.captures}",
        "seeds: " + ", ".join(f"{k} {v}" for k, v in prov.seeds.items()),
        f"config: {prov.config_file}"])])
    if prov.dataset_notes:
        sec.blocks.append(Note("Dataset notes: " + "; ".join(map(str, prov.dataset_notes))))
    rows = [Row([s.stage, s.kind, s.key, _f(s.wall_s, ".1f"), "yes" if s.resumed else "no", s.started or None,
                 s.finished, s.node or None]) for s in prov.stages]
    rows.append(Row(["total", None, None, _f(prov.wall_s_total, ".1f"), None, None, None, None]))
    sec.blocks += [
        Table(["Stage", "Kind", "Key", "Wall time (s)", "Resumed", "Started", "Finished", "Node"], rows,
              "Timeline: wall time, start, end and machine of each stage"),
        Note("Wall time of the stage's own work, summed over attempts when it was interrupted and "
             "resumed; start and end of the attempt that finished it, and the machine it ran on "
             "(with `--executor ray`, stages whose inputs were ready ran at the same time); the key "
             "is the hash of the config part the stage depends on and of its upstream keys.")]
    if prov.config_toml:
        sec.blocks.append(Section("Config", [Code(prov.config_toml, "toml")]))
    return sec


def build_document(results: StudyResults, cfg: StudyConfig, figures: ReportFigures) -> Document:
    """The whole report: the intro, then every section in order."""
    return Document(results.title, [
        *build_intro(results),
        build_camera(results, cfg),
        build_samples(figures, cfg),
        build_seed_tables(results, cfg),
        build_baselines(results, cfg),
        build_classifiers(results),
        build_reconstruction(results, cfg),
        build_bayes(results),
        build_run_figures(results, figures),
        build_provenance(results),
    ])


# ----------------------------------------------------------------------------------------------
# writing

def write_report(ctx: StageContext, d: Path) -> dict[str, Any]:
    """Write the report files into the report stage's directory ``d``.

    The runner publishes them as ``OUT/report.html``, ``OUT/report.md`` and
    ``OUT/results.json`` (:func:`publish`); Markdown figure links are relative to ``OUT``.

    Returns:
        The report stage's outputs: ``{"html", "md", "json", "figures"}`` (paths in ``d``).
    """
    results = collect_results(ctx)
    figures = draw_figures(ctx, results, d)
    doc = build_document(results, ctx.cfg, figures)
    paths = {"html": d / "report.html", "md": d / "report.md", "json": d / "results.json"}
    write_json(paths["json"], results.to_json())
    write_text(paths["md"], render_markdown(doc, ctx.out))
    write_text(paths["html"], render_html(doc))
    return {**{k: str(v) for k, v in paths.items()}, "figures": [str(p) for p in doc.figures]}


def publish(outputs: dict[str, Any], out: Path) -> dict[str, str]:
    """Copy the report stage's files to ``OUT/report.html``, ``report.md``, ``results.json``."""
    published = {}
    for key, name in (("html", "report.html"), ("md", "report.md"), ("json", "results.json")):
        write_bytes(out / name, Path(outputs[key]).read_bytes())
        published[key] = str(out / name)
    return published
