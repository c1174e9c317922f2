"""The study report: ``OUT/report.html`` (self-contained), ``OUT/report.md``, ``OUT/results.json``.

The report is built once as a list of blocks (headings, paragraphs, tables, figures, code) and
rendered twice: to Markdown (figures linked by relative path) and to HTML (figures embedded as
base64 PNG, no scripts, no external resources). ``results.json`` holds the same numbers as plain
data. Every table states its conventions underneath (units, averaging, value ranges).

Sections: the camera and its measured degradation beside the seed's 10.74 dB / 0.14; sample
grids; Tables 1-4 in the seed's layout (Accuracy, Precision, Recall, F1score, Epochs) with the
seed's published rows beside ours; other runs; baselines (cross-entropy, clean-image upper
bound); all classifiers; reconstruction quality beside the seed's 18.68 dB / 0.59; Bayes with
KL beside the seed's 0.41 / 0.84 / 0.57 / 0.52; figures of every run; provenance.
"""

from __future__ import annotations

import base64
import html
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opticsfree import __version__
from opticsfree.study.config import LENSLESS
from opticsfree.study.base import TEST, UPPER_BOUND, StageContext, jsonable
from opticsfree.utils.io import write_json, write_text

#: The seed study's capture degradation (lensless vs original, CIFAR-10 test; as published).
SEED_DEGRADATION = {"mse": 106.15, "psnr": 10.74, "ssim": 0.14}
#: The seed study's CycleGAN reconstruction quality (as published).
SEED_CYCLEGAN = {"mse": 82.13, "psnr": 18.68, "ssim": 0.59}
#: The seed's KL divergences (nats): (loss, images) -> value.
SEED_KL: dict[tuple[str, str], float] = {("triplet", "lensless"): 0.41,
                                         ("quadruplet", "lensless"): 0.84,
                                         ("triplet", "reconstructed"): 0.57,
                                         ("quadruplet", "reconstructed"): 0.52}
#: The seed's Tables 1-4: number -> (loss, images).
SEED_TABLES: dict[int, tuple[str, str]] = {1: ("triplet", "lensless"), 2: ("triplet", "reconstructed"),
                                           3: ("quadruplet", "lensless"), 4: ("quadruplet", "reconstructed")}
METHOD_NAMES = {"cyclegan": "CycleGAN", "unet": "U-Net", "bijective": "bijective",
                "tikhonov": "Tikhonov"}
TABLE_COLUMNS = ["Model", "Accuracy", "Precision", "Recall", "F1score", "Epochs", "Accuracy 95% CI"]

CONV_METRICS = ("Percent (0-100). Precision, recall and F1 are support-weighted averages over the "
                "classes, as in the seed's tables (so weighted recall equals accuracy); 95% CI: "
                "percentile bootstrap over the test rows. Classifier: {clf}. Ours: the {split} "
                "split of {data} ({n} captures); seed rows: the seed study's published numbers on "
                "the CIFAR-10 test set{cmp}.")
CONV_QUALITY = ("Images resized to {size}x{size}, values in [0, 1] (data_range 1), per-image "
                "PSNR = 10 log10(1/MSE) and SSIM (Gaussian window 11, sigma 1.5), mean +/- std "
                "over the test captures; MSE on [0, 1] and on the 0-255 scale (255^2 x MSE). The "
                "seed's MSE figures are as published: they do not match its PSNR under any single "
                "convention (10.74 dB means an MSE near 5,480 on the 0-255 scale).")


# ----------------------------------------------------------------------------------------------
# the document model


@dataclass
class Doc:
    """An ordered list of report blocks, rendered to Markdown and to HTML."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(("note", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("list", items))

    def table(self, columns: list[str], rows: list[list[Any]], caption: str | None = None,
              seed_rows: set[int] | None = None) -> None:
        self.blocks.append(("table", (columns, rows, caption, seed_rows or set())))

    def figure(self, path: str | Path, caption: str) -> None:
        p = Path(path)
        if p.is_file():
            self.blocks.append(("figure", (p, caption)))
            self.figures.append(p)

    def code(self, text: str, lang: str = "") -> None:
        self.blocks.append(("code", (text, lang)))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return str(v)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc, base: Path) -> str:
    """Markdown with figures linked relative to ``base`` (the report's directory)."""
    out: list[str] = [f"# {doc.title}", ""]
    for kind, b in doc.blocks:
        if kind == "h":
            level, text = b
            out += ["#" * (level + 1) + " " + text, ""]
        elif kind == "p":
            out += [b, ""]
        elif kind == "note":
            out += [f"*{b}*", ""]
        elif kind == "list":
            out += [f"- {x}" for x in b] + [""]
        elif kind == "table":
            columns, rows, caption, _ = b
            if caption:
                out += [f"**{caption}**", ""]
            out.append("| " + " | ".join(_md_escape(c) for c in columns) + " |")
            out.append("| " + " | ".join("---" for _ in columns) + " |")
            for r in rows:
                out.append("| " + " | ".join(_md_escape(_cell(v)) for v in r) + " |")
            out.append("")
        elif kind == "figure":
            path, caption = b
            rel = os.path.relpath(path, base)
            out += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        elif kind == "code":
            text, lang = b
            out += [f"```{lang}", text.rstrip("\n"), "```", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 .3em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}tr.seed td{color:#555;background:#fafafa;font-style:italic}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2em 0}
p.note{font-size:.85em;color:#444;margin-top:.1em}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#444}pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.85em}
nav ul{columns:2}
"""


def _anchor(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")


def render_html(doc: Doc) -> str:
    """A self-contained HTML page (figures as base64 PNG data URIs; no scripts)."""
    esc = html.escape
    toc = [(b[1], b[0]) for kind, b in doc.blocks if kind == "h" and b[0] == 1]
    body: list[str] = [f"<h1>{esc(doc.title)}</h1>"]
    if toc:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{_anchor(t)}">{esc(t)}</a></li>'
                                          for t, _ in toc) + "</ul></nav>")
    for kind, b in doc.blocks:
        if kind == "h":
            level, text = b
            body.append(f'<h{level + 1} id="{_anchor(text)}">{esc(text)}</h{level + 1}>')
        elif kind == "p":
            body.append(f"<p>{esc(b)}</p>")
        elif kind == "note":
            body.append(f'<p class="note">{esc(b)}</p>')
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in b) + "</ul>")
        elif kind == "table":
            columns, rows, caption, seed_rows = b
            t = ["<table>"]
            if caption:
                t.append(f"<caption>{esc(caption)}</caption>")
            t.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead><tbody>")
            for i, r in enumerate(rows):
                cls = ' class="seed"' if i in seed_rows else ""
                t.append(f"<tr{cls}>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in r) + "</tr>")
            t.append("</tbody></table>")
            body.append("".join(t))
        elif kind == "figure":
            path, caption = b
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{esc(caption)}</figcaption></figure>")
        elif kind == "code":
            text, _ = b
            body.append(f"<pre>{esc(text)}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(doc.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ----------------------------------------------------------------------------------------------
# formatting helpers


def _f(v: Any, fmt: str = ".2f") -> str | None:
    if v is None:
        return None
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return str(v)


def _pm(mean: Any, std: Any, fmt: str) -> str | None:
    if mean is None:
        return None
    return f"{format(mean, fmt)} +/- {format(std, fmt)}" if std is not None else format(mean, fmt)


def _ci(r: dict[str, Any]) -> str | None:
    ci = r.get("accuracy_ci")
    if not ci or len(ci) != 2 or ci[0] is None:
        return None
    return f"{ci[0]:.2f}-{ci[1]:.2f}"


def _images_name(images: str) -> str:
    if images == LENSLESS:
        return "lensless"
    if images == UPPER_BOUND:
        return "upper bound"
    return f"reconstructed ({METHOD_NAMES.get(images, images)})"


def _seed_kind(images: str) -> str:
    return "lensless" if images == LENSLESS else "reconstructed"


# ----------------------------------------------------------------------------------------------
# collecting the numbers


def collect(ctx: StageContext) -> dict[str, Any]:
    """Everything the report shows, as plain data (the content of results.json)."""
    from opticsfree.evaluation.seed_tables import SEED_ROWS

    cfg = ctx.cfg
    outs = ctx.outputs
    lens = outs[f"captures/{LENSLESS}"]
    data = outs.get("data")
    res: dict[str, Any] = {
        "title": cfg.title(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": cfg.study.name,
        "dataset": (data or {}).get("dataset") or ((lens.get("source") or {}).get("dataset")),
        "camera": {"name": lens.get("camera_name"), "parameters": lens.get("camera"),
                   "source": cfg.captures.source},
        "captures": {"lensless": _set_info(lens)},
        "degradation": {"ours": lens.get("quality"), "seed": SEED_DEGRADATION},
        "reconstruction_quality": {"lensless": lens.get("quality")},
        "seed": {"degradation": SEED_DEGRADATION, "cyclegan": SEED_CYCLEGAN,
                 "kl": {f"{k[0]}/{k[1]}": v for k, v in SEED_KL.items()},
                 "tables": [r.as_dict() for r in SEED_ROWS]},
        "runs": {},
        "bayes": {},
    }
    for name, o in outs.items():
        if name.startswith("captures/") and name != f"captures/{LENSLESS}":
            kind = name.split("/", 1)[1]
            res["captures"][kind] = _set_info(o)
            if kind == UPPER_BOUND:
                res["degradation"]["upper_bound"] = o.get("quality")
            else:
                res["reconstruction_quality"][kind] = o.get("quality")
    res["reconstruction_training"] = {}
    for name, o in outs.items():
        if name.startswith("reconstruct/"):
            rows = [r for r in (o.get("metrics") or []) if isinstance(r, dict)]
            secs = [r["seconds"] for r in rows if isinstance(r.get("seconds"), (int, float))]
            last = rows[-1] if rows else {}
            res["reconstruction_training"][o["method"]] = {
                "epochs": last.get("epoch"), "seconds_per_epoch": sum(secs) / len(secs) if secs else None,
                "images_per_s": last.get("images_per_s"), "val_psnr": last.get("val_psnr"),
                "val_ssim": last.get("val_ssim"), "model": o.get("model")}
    for name, o in outs.items():
        if name.startswith("evaluate/"):
            label = name.split("/", 1)[1]
            train = outs.get(f"train/{label}", {})
            res["runs"][label] = {"loss": o["loss"], "images": o["images"], "role": o["role"],
                                  "primary_classifier": o["primary"],
                                  "train_summary": train.get("summary"), "results": o["results"]}
        elif name.startswith("bayes/"):
            label = name.split("/", 1)[1]
            res["bayes"][label] = {k: v for k, v in o.items() if k not in ("figures", "file")}
            kind = _seed_kind(o["images"])
            res["bayes"][label]["seed_kl"] = SEED_KL.get((o["loss"], kind))
    res["tables"] = {str(n): _seed_table_data(res, n) for n in SEED_TABLES}
    res["conventions"] = {
        "metrics": "percent (0-100); precision/recall/F1 support-weighted over classes (weighted "
                   "recall = accuracy); macro_* unweighted",
        "quality": CONV_QUALITY.format(size=cfg.captures.quality_size),
        "bayes": "natural logs (nats); KL(posterior||prior) averaged over test captures; "
                 "KL(label distribution||mean posterior); accuracy in %; temperature fitted on val",
    }
    res["provenance"] = provenance(ctx)
    return jsonable(res)


def _set_info(o: dict[str, Any]) -> dict[str, Any]:
    keep = ("captures", "classes", "splits", "frames", "channels", "source", "camera_name",
            "derived", "reconstruction", "method", "check", "quality")
    return {k: o.get(k) for k in keep if k in o}


def _final(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    return results[-1] if results else None


def _seed_table_data(res: dict[str, Any], n: int) -> dict[str, Any]:
    loss, kind = SEED_TABLES[n]
    ours = {label: r["results"][r["primary_classifier"]] for label, r in res["runs"].items()
            if r["loss"] == loss and r["role"] == "main" and _seed_kind(r["images"]) == kind}
    seed = [r for r in res["seed"]["tables"] if r["table"] == n]
    return {"loss": loss, "images": kind, "ours": ours, "seed": seed}


def provenance(ctx: StageContext) -> dict[str, Any]:
    """Package and library versions, machine, seeds, data copy, wall time per stage."""
    import torch

    cfg = ctx.cfg
    data = ctx.outputs.get("data") or {}
    lens = ctx.outputs[f"captures/{LENSLESS}"]
    stages = []
    for name, rec in ctx.done.items():
        stages.append({"stage": name, "kind": rec.get("kind"), "key": rec.get("key"),
                       "wall_s": rec.get("wall_s_total", rec.get("wall_s")),
                       "resumed": rec.get("resumed", False), "finished": rec.get("finished")})
    config_text = None
    toml = ctx.out / "study.toml"
    if toml.is_file():
        config_text = toml.read_text(encoding="utf-8")
    s = cfg.study.seed
    return {
        "package_version": __version__,
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "machine": {"hostname": platform.node(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device": ctx.device,
                    "cuda": torch.cuda.get_device_name(0) if ctx.device == "cuda" else None},
        "seeds": {"study": s, "simulation": s, "tuples": s, "training": s, "reconstruction": s,
                  "bootstrap_and_tsne": s},
        "data_copy": data.get("source") or (lens.get("source") or {}).get("copy"),
        "dataset": data.get("dataset") or (lens.get("source") or {}).get("dataset"),
        "dataset_notes": data.get("notes") or (lens.get("source") or {}).get("notes"),
        "captures": lens.get("captures"),
        "config_file": cfg.source,
        "config_toml": config_text,
        "config": cfg.to_dict(),
        "stages": stages,
        "wall_s_total": sum(float(x["wall_s"] or 0) for x in stages),
    }


# ----------------------------------------------------------------------------------------------
# figures made by the report


def _sample_grid(root: str, out: Path, n: int, seed: int) -> Path | None:
    from opticsfree.captures.show import show_capture_set

    try:
        return show_capture_set(root, out, split=TEST, n=n, seed=seed)
    except Exception:  # noqa: BLE001 - a figure must not sink the report
        return None


def _reconstruction_grid(sets: dict[str, str], out: Path, n: int, size: int, seed: int) -> Path | None:
    """original | lensless | each method, on the same test scenes (first frame)."""
    from opticsfree.captures.show import compare_capture_sets

    titled = {("lensless" if k == LENSLESS else METHOD_NAMES.get(k, k)): v for k, v in sets.items()}
    try:
        return compare_capture_sets(titled, out, split=TEST, n=n, size=size, seed=seed)
    except Exception:  # noqa: BLE001 - a figure must not sink the report
        return None


# ----------------------------------------------------------------------------------------------
# the document


def _metric_rows(label: str, results: list[dict[str, Any]]) -> list[list[Any]]:
    return [[label, _f(r["accuracy"]), _f(r["precision"]), _f(r["recall"]), _f(r["f1"]),
             r["epoch"], _ci(r)] for r in results]


def _seed_metric_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[f"seed Table {r['table']} ({r['loss']}, {r['images']})", _f(r["accuracy"]),
             _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["epochs"], None] for r in rows]


def build_document(ctx: StageContext, res: dict[str, Any], d: Path) -> Doc:
    """The report's blocks (figures it draws itself go to ``d``)."""
    cfg = ctx.cfg
    outs = ctx.outputs
    doc = Doc(res["title"])
    dataset = res["dataset"] or "?"
    lens = outs[f"captures/{LENSLESS}"]
    n_test = (lens.get("quality") or {}).get("n")
    prov = res["provenance"]
    doc.p(f"Study {cfg.study.name!r}: {dataset} shown on a display and captured by a bare sensor "
          f"(camera {res['camera']['name']!r}); deep metric learning on the captures and on "
          f"reconstructions, compared with the seed study's published numbers. Generated "
          f"{res['created']} by opticsfree {__version__} on {prov['machine']['hostname']} "
          f"({prov['machine']['cpu_count']} CPUs, device {ctx.device}); "
          f"total stage wall time {prov['wall_s_total']:.0f} s.")
    if dataset != "cifar10":
        doc.note(f"This study uses {dataset}, not CIFAR-10: the seed's numbers are shown for "
                 f"reference and are not directly comparable.")

    # ---- camera ------------------------------------------------------------------------------
    doc.h(1, "Camera and measured degradation")
    cam = res["camera"]["parameters"] or {}
    if cfg.captures.source == "simulate":
        geo = cam.get("geometry") or {}
        facts = [f"camera: {cam.get('name')} ({cam.get('type', '?')}): {cam.get('description', '')}".strip()]
        facts += [f"geometry: {', '.join(f'{k} = {v}' for k, v in geo.items())}"] if geo else []
        facts += [f"captures: {lens.get('splits')} scenes per split, {lens.get('frames')} frame(s) "
                  f"per scene, {lens.get('channels')} channel(s), simulation seed {lens.get('seed')}"]
        doc.items(facts)
    else:
        doc.items([f"existing capture set {lens.get('captures')} ({cam.get('type', 'simulated')}; "
                   f"{lens.get('splits')} scenes per split)"])
    q = lens.get("quality") or {}
    rows = [["seed study (published)", _f(SEED_DEGRADATION["psnr"]), _f(SEED_DEGRADATION["ssim"], ".2f"),
             None, f"{SEED_DEGRADATION['mse']} (as published)", None],
            [f"ours: {res['camera']['name']} camera", _pm(q.get("psnr"), q.get("psnr_std"), ".2f"),
             _pm(q.get("ssim"), q.get("ssim_std"), ".3f"), _f(q.get("mse"), ".4f"),
             _f(q.get("mse_255"), ".1f"), q.get("n")]]
    ub = res["degradation"].get("upper_bound")
    if ub:
        rows.append([f"ours: upper bound ({cfg.baselines.upper_bound_camera} camera)",
                     _pm(ub.get("psnr"), ub.get("psnr_std"), ".2f"),
                     _pm(ub.get("ssim"), ub.get("ssim_std"), ".3f"), _f(ub.get("mse"), ".4f"),
                     _f(ub.get("mse_255"), ".1f"), ub.get("n")])
    doc.table(["Captures vs originals", "PSNR (dB)", "SSIM", "MSE [0,1]", "MSE (0-255)", "n"], rows,
              "Degradation of the lensless captures (test split)", {0})
    doc.note(CONV_QUALITY.format(size=cfg.captures.quality_size))

    doc.h(1, "Sample captures")
    grid = _sample_grid(lens["captures"], d / "samples_lensless.png", cfg.report.samples, cfg.study.seed)
    if grid:
        doc.figure(grid, "Test originals (top), their lensless captures (middle) and the camera's "
                         "point responses (bottom)")
    if f"captures/{UPPER_BOUND}" in outs:
        g = _sample_grid(outs[f"captures/{UPPER_BOUND}"]["captures"], d / "samples_upper_bound.png",
                         cfg.report.samples, cfg.study.seed)
        if g:
            doc.figure(g, f"The upper-bound set: the same scenes through the "
                          f"{cfg.baselines.upper_bound_camera!r} camera")
    recon_sets = {LENSLESS: lens["captures"]}
    recon_sets.update({m: outs[f"captures/{m}"]["captures"] for m in cfg.reconstruct.methods
                       if f"captures/{m}" in outs})
    if len(recon_sets) > 1:
        g = _reconstruction_grid(recon_sets, d / "reconstructions.png", cfg.report.samples,
                                 cfg.captures.quality_size, cfg.study.seed)
        if g:
            doc.figure(g, "Original | lensless capture | each reconstruction, on the same test scenes")

    # ---- Tables 1-4 --------------------------------------------------------------------------
    doc.h(1, "Tables 1-4 (the seed's layout)")
    cmp = "" if dataset == "cifar10" else f" (not comparable: this study uses {dataset})"
    for n, (loss, kind) in SEED_TABLES.items():
        t = res["tables"][str(n)]
        title = f"Table {n}: {loss} loss, {kind} images"
        doc.h(2, title)
        if not t["ours"]:
            why = (f"{loss} is not in [train] losses" if loss not in cfg.train.losses else
                   "no reconstruction method in [reconstruct] methods / [train] images")
            doc.p(f"Not run in this study ({why}); the seed's published rows:")
            rows = _seed_metric_rows(t["seed"])
            doc.table(TABLE_COLUMNS, rows, title, set(range(len(rows))))
            continue
        for label, results in t["ours"].items():
            images = res["runs"][label]["images"]
            clf = res["runs"][label]["primary_classifier"]
            ours = _metric_rows(f"ours ({loss}, {_images_name(images)}, {clf})", results)
            seed = _seed_metric_rows(t["seed"])
            doc.table(TABLE_COLUMNS, ours + seed, f"{title}: ours ({_images_name(images)}) and the seed",
                      set(range(len(ours), len(ours) + len(seed))))
            doc.note(CONV_METRICS.format(clf=clf, split=TEST, data=dataset, n=results[-1].get("n"),
                                         cmp=cmp))

    others = {k: r for k, r in res["runs"].items()
              if r["role"] == "main" and r["loss"] not in ("triplet", "quadruplet")}
    if others:
        doc.h(2, "Other losses")
        rows = []
        for label, r in others.items():
            rows += _metric_rows(f"ours ({r['loss']}, {_images_name(r['images'])}, "
                                 f"{r['primary_classifier']})", r["results"][r["primary_classifier"]])
        doc.table(TABLE_COLUMNS, rows, "Losses without a seed table")
        doc.note(CONV_METRICS.format(clf="as named in each row", split=TEST, data=dataset,
                                     n=n_test, cmp=cmp))

    # ---- baselines ---------------------------------------------------------------------------
    doc.h(1, "Baselines")
    rows = []
    for label, r in res["runs"].items():
        clf = r["primary_classifier"]
        fin = _final(r["results"][clf])
        if fin is None:
            continue
        role = {"main": "main run", "baseline": "cross-entropy baseline",
                "upper-bound": "clean-image upper bound"}[r["role"]]
        rows.append([f"{r['loss']}, {_images_name(r['images'])}", role, clf, _f(fin["accuracy"]),
                     _f(fin["precision"]), _f(fin["recall"]), _f(fin["f1"]), fin["epoch"], _ci(fin)])
    doc.table(["Run", "Role", "Classifier", "Accuracy", "Precision", "Recall", "F1score", "Epochs",
               "Accuracy 95% CI"], rows, "Final checkpoint of every run (same backbone, epochs and budget)")
    notes = [CONV_METRICS.format(clf="as named in each row (head: argmax of the cross-entropy "
                                     "head's logits)", split=TEST, data=dataset, n=n_test, cmp=cmp)]
    if cfg.upper_bound_losses():
        if f"captures/{UPPER_BOUND}" in outs:
            notes.append(f"Clean-image upper bound: the trainer has no originals-only mode, so the "
                         f"same scenes are simulated through the {cfg.baselines.upper_bound_camera!r} "
                         f"camera (a lens: {_f((ub or {}).get('psnr'))} dB PSNR against the "
                         f"originals) and the same backbone, loss and schedule are trained and "
                         f"tested on those near-clean captures.")
        else:
            notes.append("Clean-image upper bound: not run (the study uses an existing capture "
                         "set, so there is no dataset to re-capture through a lens).")
    for nt in notes:
        doc.note(nt)

    # ---- all classifiers ---------------------------------------------------------------------
    doc.h(1, "Classifiers")
    rows = []
    for label, r in res["runs"].items():
        for clf, results in r["results"].items():
            fin = _final(results)
            if fin is None:
                continue
            extra = []
            if clf == "knn":
                extra.append(f"k = {fin.get('k')}")
            if clf == "threshold":
                extra.append(f"t = {_f(fin.get('threshold'), '.3f')}, verification "
                             f"{_f(fin.get('verification_accuracy'))}%, EER {_f(fin.get('eer'))}%, "
                             f"reject {_f(fin.get('reject_rate'))}%")
            rows.append([f"{r['loss']}, {_images_name(r['images'])}", clf, _f(fin["accuracy"]),
                         _f(fin.get("macro_f1")), _f(fin.get("precision_at_1")),
                         _f(fin.get("map_at_r")), fin["epoch"], "; ".join(extra) or None])
    doc.table(["Run", "Classifier", "Accuracy", "Macro F1", "Precision@1", "MAP@R", "Epochs", "Notes"],
              rows, "Every classifier at the final checkpoint")
    doc.note("Percent. prototype: nearest class centroid of the train-original embeddings; knn: "
             "k nearest train originals, k chosen on val; threshold: the seed's distance threshold "
             "chosen on val (closed-set accuracy; verification accuracy/EER on (capture, class "
             "prototype) pairs; reject: captures farther than t from every prototype); head: the "
             "cross-entropy head. Precision@1 and MAP@R: retrieval of the test originals from the "
             "test captures.")

    # ---- reconstruction quality --------------------------------------------------------------
    doc.h(1, "Reconstruction quality")
    rows = [["seed: lensless (published)", _f(SEED_DEGRADATION["psnr"]), _f(SEED_DEGRADATION["ssim"]),
             None, f"{SEED_DEGRADATION['mse']} (as published)"],
            ["seed: CycleGAN (published)", _f(SEED_CYCLEGAN["psnr"]), _f(SEED_CYCLEGAN["ssim"]),
             None, f"{SEED_CYCLEGAN['mse']} (as published)"]]
    seed_idx = {0, 1}
    for kind, qq in res["reconstruction_quality"].items():
        if not qq:
            continue
        name = "lensless captures" if kind == LENSLESS else METHOD_NAMES.get(kind, kind)
        rows.append([f"ours: {name}", _pm(qq.get("psnr"), qq.get("psnr_std"), ".2f"),
                     _pm(qq.get("ssim"), qq.get("ssim_std"), ".3f"), _f(qq.get("mse"), ".4f"),
                     _f(qq.get("mse_255"), ".1f")])
    doc.table(["Images vs originals", "PSNR (dB)", "SSIM", "MSE [0,1]", "MSE (0-255)"], rows,
              "Reconstructions against the originals (test split)", seed_idx)
    doc.note(CONV_QUALITY.format(size=cfg.captures.quality_size))
    if res.get("reconstruction_training"):
        rows = []
        for m, t in res["reconstruction_training"].items():
            rows.append([METHOD_NAMES.get(m, m), t.get("epochs"), _f(t.get("seconds_per_epoch"), ".1f"),
                         _f(t.get("images_per_s"), ".1f"), _f(t.get("val_psnr")), _f(t.get("val_ssim"), ".3f")])
        doc.table(["Method", "Epochs", "Seconds per epoch", "Images/s", "Val PSNR (dB)", "Val SSIM"],
                  rows, "Reconstruction training")
        doc.note("Measured during this study's run; validation: the held-out part of the train split "
                 "at the method's training size (last epoch).")
    if not cfg.reconstruct.methods:
        doc.p("No reconstruction method in this study ([reconstruct] methods is empty).")

    # ---- Bayes -------------------------------------------------------------------------------
    doc.h(1, "Bayesian inference")
    if res["bayes"]:
        rows = []
        for label, b in res["bayes"].items():
            rows.append([f"{b['loss']}, {_images_name(b['images'])}", b.get("likelihood"),
                         b.get("prior"), b.get("epoch"), _f(b.get("temperature"), ".4g"),
                         _f(b.get("accuracy")), _f(b.get("nll"), ".3f"), _f(b.get("ece"), ".3f"),
                         _f(b.get("brier"), ".3f"), _f(b.get("kl_posterior_prior"), ".3f"),
                         _f(b.get("kl_label_meanposterior"), ".3f"), _f(b.get("seed_kl"))])
        doc.table(["Run", "Likelihood", "Prior", "Epoch", "T", "MAP accuracy", "NLL", "ECE", "Brier",
                   "KL(post||prior)", "KL(labels||mean post)", "seed KL"], rows,
                  "Posterior = prior x likelihood, temperature fitted on val")
        doc.note("Natural logs (nats). KL(post||prior): mean over test captures of "
                 "KL(posterior || prior); KL(labels||mean post): KL(empirical class distribution || "
                 "mean posterior). MAP accuracy in percent; NLL in nats; ECE with 15 equal-width "
                 "bins; Brier summed over classes (0-2). seed KL: the seed's reported value for the "
                 "same loss and image kind (which KL it is was not stated; docs/bayes.md argues it "
                 "is closest to KL(posterior || prior)).")
        multi = {k: b for k, b in res["bayes"].items() if (b.get("frames_per_scene") or 1) > 1}
        if multi:
            rows = []
            for label, b in multi.items():
                for fr in b.get("frames") or []:
                    rows.append([f"{b['loss']}, {_images_name(b['images'])}", fr["k"],
                                 _f(fr["accuracy"]), _f(fr["kl"], ".3f")])
                mf = b.get("mean_frame")
                if mf:
                    rows.append([f"{b['loss']}, {_images_name(b['images'])}",
                                 f"mean of {mf['k']} frames", _f(mf["accuracy"]), _f(mf["kl"], ".3f")])
            doc.table(["Run", "Frames fused", "MAP accuracy", "KL(post||prior)"], rows,
                      "Multi-frame evidence: the posterior after frame k is the prior of frame k+1")
            doc.note("Percent and nats, per scene.")
    else:
        doc.p("The Bayes stage is disabled in this study ([bayes] enabled = false).")

    # ---- figures -----------------------------------------------------------------------------
    doc.h(1, "Figures of every run")
    captions = {"threshold": "Threshold for lensless images: distance distributions of matching "
                             "and non-matching pairs with the threshold chosen on val",
                "confusion": "Confusion matrix (test)", "tsne": "t-SNE map of lensless (dots) and "
                "original (triangles) test embeddings", "learning_curves": "Learning curves",
                "bayes_test_bars": "Prior, likelihood and posterior for example test captures",
                "bayes_test_reliability": "Reliability diagrams before and after temperature fitting",
                "bayes_test_frames": "Accuracy and KL against the number of fused frames"}
    for name, o in outs.items():
        if not name.startswith("evaluate/"):
            continue
        label = name.split("/", 1)[1]
        doc.h(2, f"{o['loss']}, {_images_name(o['images'])}")
        figs = list(o.get("figures", []))
        b = outs.get(f"bayes/{label}")
        if b:
            figs += [f for f in b.get("figures", []) if f not in figs]
        for f in figs:
            stem = Path(f).stem
            cap = next((c for k, c in captions.items() if stem.startswith(k)), stem)
            doc.figure(f, f"{cap} ({o['loss']}, {_images_name(o['images'])})")

    # ---- provenance --------------------------------------------------------------------------
    doc.h(1, "Provenance")
    m = prov["machine"]
    doc.items([f"opticsfree {prov['package_version']}, Python {prov['python']}, torch {prov['torch']}",
               f"machine: {m['hostname']} ({m['processor']}, {m['cpu_count']} CPUs), "
               f"{prov['platform']}, device {m['device']}" + (f" ({m['cuda']})" if m.get("cuda") else ""),
               f"dataset: {prov['dataset']}; copy read: {prov['data_copy']}",
               f"capture set: {prov['captures']}",
               "seeds: " + ", ".join(f"{k} {v}" for k, v in prov["seeds"].items()),
               f"config: {prov['config_file']}"])
    if prov.get("dataset_notes"):
        doc.note("Dataset notes: " + "; ".join(map(str, prov["dataset_notes"])))
    rows = [[s["stage"], s["kind"], s["key"], _f(s["wall_s"], ".1f"), "yes" if s["resumed"] else "no",
             s["finished"]] for s in prov["stages"]]
    rows.append(["total", None, None, _f(prov["wall_s_total"], ".1f"), None, None])
    doc.table(["Stage", "Kind", "Key", "Wall time (s)", "Resumed", "Finished"], rows,
              "Wall time per stage")
    doc.note("Wall time of the stage's own work, summed over attempts when it was interrupted and "
             "resumed; the key is the hash of the config part the stage depends on and of its "
             "upstream keys.")
    if prov.get("config_toml"):
        doc.h(2, "Config")
        doc.code(prov["config_toml"], "toml")
    return doc


def write_report(ctx: StageContext, d: Path) -> dict[str, Any]:
    """Write the report files into the report stage's directory ``d``.

    The runner publishes them as ``OUT/report.html``, ``OUT/report.md`` and
    ``OUT/results.json`` (:func:`publish`); Markdown figure links are relative to ``OUT``.

    Returns:
        The report stage's outputs: ``{"html", "md", "json", "figures"}`` (paths in ``d``).
    """
    res = collect(ctx)
    doc = build_document(ctx, res, d)
    paths = {"html": d / "report.html", "md": d / "report.md", "json": d / "results.json"}
    write_json(paths["json"], res)
    write_text(paths["md"], render_markdown(doc, ctx.out))
    write_text(paths["html"], render_html(doc))
    return {**{k: str(v) for k, v in paths.items()}, "figures": [str(p) for p in doc.figures]}


def publish(outputs: dict[str, Any], out: Path) -> dict[str, str]:
    """Copy the report stage's files to ``OUT/report.html``, ``report.md``, ``results.json``."""
    from opticsfree.utils.io import write_bytes

    published = {}
    for key, name in (("html", "report.html"), ("md", "report.md"), ("json", "results.json")):
        write_bytes(out / name, Path(outputs[key]).read_bytes())
        published[key] = str(out / name)
    return published
