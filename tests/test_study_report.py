"""The study's parts without running a study: the document model and its renderers, the report's
sections built from typed results, the seed's published numbers (one module), and the stage
engine (keys, markers, resume, failures) with stand-in stage functions."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import pytest

from opticsfree import seed_study
from opticsfree.study.base import Stage, StageContext
from opticsfree.study.config import study_config_from_dict
from opticsfree.study.engine import StageError, assign_keys, read_done, run_stages
from opticsfree.study.report import (TABLE_COLUMNS, ReportFigures, build_bayes, build_baselines,
                                     build_camera, build_document, build_other_losses,
                                     build_reconstruction, build_seed_table, build_seed_tables)
from opticsfree.study.results import (CameraSummary, CaptureSetInfo, Machine, Provenance, Quality,
                                      RunResults, StageTime, StudyResults, _seed_tables)
from opticsfree.utils.document import (BulletList, Code, Document, Figure, Note, Paragraph, Row,
                                       Section, Table, figure_if_present, render_html,
                                       render_markdown, render_terminal)

SRC = Path(__file__).resolve().parents[1] / "src" / "opticsfree"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


# ----------------------------------------------------------------------------------------------
# the document model


def test_markdown_and_html_render_nesting_tables_figures_and_code(tmp_path):
    fig = tmp_path / "figs" / "a.png"
    fig.parent.mkdir()
    fig.write_bytes(PNG)
    doc = Document("Title <1>", [
        Paragraph("intro"),
        Section("First part", [
            Table(["name", "value"], [Row(["a | b", None]), Row(["published", 1.5], reference=True)],
                  caption="cap"),
            Note("units"),
            Figure(fig, "a figure"),
            Section("Sub part", [Code("x = 1\n", "toml")]),
        ]),
        Section("Second", [Paragraph("<b>not bold</b>")]),
    ])
    assert doc.figures == [fig]

    md = render_markdown(doc, tmp_path).splitlines()
    assert md[0] == "# Title <1>" and "## First part" in md and "### Sub part" in md
    assert "| a \\| b | - |" in md and "| published | 1.5 |" in md and "**cap**" in md
    assert "| --- | --- |" in md              # no alignment stated: plain separators
    assert "*units*" in md and "![a figure](figs/a.png)" in md
    assert md[md.index("```toml") + 1] == "x = 1"

    page = render_html(doc)
    assert "<title>Title &lt;1&gt;</title>" in page and "&lt;b&gt;not bold" in page
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert 'href="#first-part"' in nav and 'href="#second"' in nav and "sub-part" not in nav
    assert '<h2 id="first-part">' in page and '<h3 id="sub-part">' in page
    rows = re.findall(r"<tr[^>]*>", page)
    assert rows == ["<tr>", "<tr>", '<tr class="reference">']     # header, measured, reference
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(data) == PNG
    assert "<script" not in page


def terminal_text(doc: Document, width: int = 100) -> str:
    """What :func:`render_terminal` prints, as plain text."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    render_terminal(doc, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def test_the_terminal_shows_titles_tables_lists_and_figure_paths(tmp_path):
    fig = tmp_path / "a.png"
    doc = Document("Title [bold]x[/bold]", [
        Paragraph("intro"),
        Section("First part", [
            Table(["name", "value"], [Row(["alpha", None]), Row(["published", 1.5], reference=True)],
                  caption="cap", align=["left", "right"]),
            Note("units"),
            BulletList(["one", "two"]),
            Section("Sub part", [Figure(fig, "a figure"), Code("x = 1\n")]),
        ]),
    ])
    text = terminal_text(doc)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "Title [bold]x[/bold]"      # not parsed as rich markup
    assert "intro" in lines and "First part" in lines and "  Sub part" in lines
    assert "cap" in text and re.search(r"name\s+value", text)
    assert re.search(r"alpha\s+-", text) and re.search(r"published\s+1\.5", text)
    assert "units" in lines and "- one" in lines and "- two" in lines
    assert f"a figure: {fig}" in lines and "x = 1" in lines
    # a right-aligned column puts its cells under the header's right edge
    header = next(line for line in lines if "value" in line)
    row = next(line for line in lines if "alpha" in line)
    assert len(row) == len(header) and row.endswith("-")
    # a long paragraph (a path) is not wrapped
    long = "wrote " + "/x" * 80
    assert long in terminal_text(Document("t", [Paragraph(long)]), width=40).splitlines()


def test_table_alignment_marks_markdown_columns_and_is_checked(tmp_path):
    doc = Document("T", [Table(["a", "b"], [Row(["x", 1])], align=["left", "right"])])
    assert "| --- | ---: |" in render_markdown(doc, tmp_path).splitlines()
    with pytest.raises(ValueError, match="1 alignments for 2 columns"):
        Table(["a", "b"], [], align=["left"])
    with pytest.raises(ValueError, match="unknown alignment 'centre'"):
        Table(["a", "b"], [], align=["left", "centre"])


def test_a_table_row_with_the_wrong_number_of_cells_is_refused():
    with pytest.raises(ValueError, match=r"table 'T': row 1 has 1 cells for 2 columns"):
        Table(["a", "b"], [Row([1, 2]), Row([1])], "T")


def test_a_missing_figure_leaves_no_block(tmp_path):
    assert figure_if_present(tmp_path / "nope.png", "x") == []
    assert figure_if_present(None, "x") == []
    (tmp_path / "yes.png").write_bytes(PNG)
    assert figure_if_present(tmp_path / "yes.png", "x") == [Figure(tmp_path / "yes.png", "x")]


# ----------------------------------------------------------------------------------------------
# typed results and the report's sections


def metric(epoch: int, acc: float) -> dict:
    return {"epoch": epoch, "n": 60, "accuracy": acc, "precision": acc / 2, "recall": acc,
            "f1": acc / 3, "accuracy_ci": [acc - 5, acc + 5], "macro_f1": 1.0,
            "precision_at_1": 2.0, "map_at_r": 3.0}


def quality(psnr: float) -> Quality:
    return Quality(n=60, mse=0.1, mse_255=6502.5, psnr=psnr, psnr_std=0.5, ssim=0.2, ssim_std=0.01,
                   convention="c")


def capture_set(name: str, psnr: float) -> CaptureSetInfo:
    return CaptureSetInfo(captures=f"/x/{name}", classes=["a", "b"], splits={"train": 6, "test": 6},
                          frames=1, channels=1, source={"dataset": "digits"}, camera_name="seed",
                          derived=False, reconstruction=None, method=None, check={"ok": True},
                          quality=quality(psnr), seed=0)


def make_results(runs: dict[str, RunResults], bayes: dict | None = None, upper: bool = True,
                 dataset: str = "digits") -> StudyResults:
    captures = {"lensless": capture_set("lensless", 8.0)}
    if upper:
        captures["upper-bound"] = capture_set("upper-bound", 27.5)
    prov = Provenance("0", "3", "2", "linux", Machine("host", "x86", 2, "cpu", None),
                      {"study": 0}, "copy", dataset, None, "/x/lensless", "c.toml", None, {},
                      [StageTime("data", "data", "k", 1.5, False, "t")])
    return StudyResults(title="T", created="now", study="s", dataset=dataset,
                        camera=CameraSummary("seed", {"name": "seed", "type": "bare"}, "simulate"),
                        captures=captures, reconstruction_training={}, runs=runs, bayes=bayes or {},
                        tables=_seed_tables(runs), quality_size=16, provenance=prov)


def config(**tables):
    base = {"data": {"dataset": "digits", "limit": 60}, "train": {"losses": ["triplet"], "epochs": 2}}
    return study_config_from_dict({**base, **tables})


TRIPLET = RunResults("triplet", "lensless", "main", "prototype", None,
                     {"knn": [metric(1, 20.0), metric(2, 25.0)],
                      "prototype": [metric(1, 21.0), metric(2, 26.0)]})
CE = RunResults("ce", "lensless", "baseline", "head", None, {"head": [metric(2, 30.0)]})


def cells(table: Table, reference: bool) -> list[list]:
    return [list(r.cells) for r in table.rows if r.reference == reference]


def test_the_report_seed_columns_come_from_seed_study():
    res = make_results({"triplet/lensless": TRIPLET})
    cfg = config()
    for t in seed_study.TABLES:
        sec = build_seed_table(res, cfg, t)
        table = next(b for b in sec.blocks if isinstance(b, Table))
        expected = [[r.label, f"{r.accuracy:.2f}", f"{r.precision:.2f}", f"{r.recall:.2f}",
                     f"{r.f1:.2f}", r.epochs, None] for r in seed_study.table_rows(t.number)]
        assert cells(table, reference=True) == expected and len(expected) == 3
    camera = next(b for b in build_camera(res, cfg).blocks if isinstance(b, Table))
    d = seed_study.DEGRADATION
    assert cells(camera, True) == [["seed study (published)", f"{d.psnr:.2f}", f"{d.ssim:.2f}", None,
                                    f"{d.mse} (as published)", None]]
    recon = next(b for b in build_reconstruction(res, cfg).blocks if isinstance(b, Table))
    assert [c[1] for c in cells(recon, True)] == [f"{d.psnr:.2f}", f"{seed_study.CYCLEGAN.psnr:.2f}"]
    j = res.to_json()
    assert j["seed"]["tables"] == [r.as_dict() for r in seed_study.ROWS]
    assert j["seed"]["kl"] == {f"{k[0]}/{k[1]}": v for k, v in seed_study.KL.items()}
    assert j["degradation"]["seed"] == d.to_json() and j["seed"]["cyclegan"] == seed_study.CYCLEGAN.to_json()


def test_the_seed_numbers_are_written_only_in_seed_study():
    published = {f"{v:.2f}" for r in seed_study.ROWS for v in (r.accuracy, r.precision, r.recall, r.f1)}
    published |= {f"{v:.2f}" for q in (seed_study.DEGRADATION, seed_study.CYCLEGAN) for v in (q.mse, q.psnr)}
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "seed_study.py":
            continue
        text = path.read_text(encoding="utf-8")
        for n in published:
            if re.search(r"(?<![\d.])" + re.escape(n) + r"(?!\d)", text):
                found.append(f"{path.relative_to(SRC)}: {n}")
    assert found == [], "read the seed's numbers from opticsfree.seed_study"


def test_seed_table_sections_show_our_checkpoints_then_the_seed_or_say_why_not_run():
    res = make_results({"triplet/lensless": TRIPLET})
    cfg = config()
    t1 = build_seed_table(res, cfg, seed_study.TABLES[0])
    table = t1.blocks[0]
    assert t1.title == "Table 1: triplet loss, lensless images" and list(table.columns) == TABLE_COLUMNS
    # the primary classifier's rows, one per checkpoint, before the reference rows
    assert [c[:2] + c[5:] for c in cells(table, False)] == [
        ["ours (triplet, lensless, prototype)", "21.00", 1, "16.00-26.00"],
        ["ours (triplet, lensless, prototype)", "26.00", 2, "21.00-31.00"]]
    assert [r.reference for r in table.rows] == [False, False, True, True, True]
    assert "not comparable: this study uses digits" in t1.blocks[1].text
    t3 = build_seed_table(res, cfg, seed_study.TABLES[2])
    assert "quadruplet is not in [train] losses" in t3.blocks[0].text
    assert all(r.reference for r in t3.blocks[1].rows)
    t2 = build_seed_table(res, cfg, seed_study.TABLES[1])
    assert "no reconstruction method" in t2.blocks[0].text
    # CIFAR-10: comparable, no remark
    cifar = build_seed_table(make_results({"triplet/lensless": TRIPLET}, dataset="cifar10"), cfg,
                             seed_study.TABLES[0])
    assert "not comparable" not in cifar.blocks[1].text


def test_other_losses_and_baselines_sections():
    assert build_other_losses(make_results({"triplet/lensless": TRIPLET, "ce/lensless": CE})) is None
    main_ce = RunResults("ce", "lensless", "main", "head", None, {"head": [metric(2, 30.0)]})
    res = make_results({"triplet/lensless": TRIPLET, "ce/lensless": main_ce})
    other = build_other_losses(res)
    assert other.title == "Other losses" and cells(other.blocks[0], False)[0][0] == "ours (ce, lensless, head)"
    assert [s.title for s in build_seed_tables(res, config()).blocks][-1] == "Other losses"

    cfg = config(baselines={"ce": True, "upper_bound": True})
    sec = build_baselines(make_results({"triplet/lensless": TRIPLET, "ce/lensless": CE}), cfg)
    rows = cells(sec.blocks[0], False)
    assert [r[:3] for r in rows] == [["triplet, lensless", "main run", "prototype"],
                                     ["ce, lensless", "cross-entropy baseline", "head"]]
    assert rows[0][3] == "26.00"                     # the final checkpoint
    notes = [b.text for b in sec.blocks if isinstance(b, Note)]
    assert any("27.50 dB PSNR against the originals" in n for n in notes)
    no_set = build_baselines(make_results({"triplet/lensless": TRIPLET}, upper=False), cfg)
    assert any("not run" in b.text for b in no_set.blocks if isinstance(b, Note))


def test_bayes_section_reads_the_seed_kl_and_says_when_disabled():
    res = make_results({"triplet/lensless": TRIPLET})
    assert isinstance(build_bayes(res).blocks[0], Paragraph)
    b = {"loss": "quadruplet", "images": "unet", "likelihood": "metric", "prior": "uniform",
         "epoch": 2, "accuracy": 20.0, "kl_posterior_prior": 0.1,
         "seed_kl": seed_study.seed_kl("quadruplet", "reconstructed"),
         "frames_per_scene": 2, "frames": [{"k": 1, "accuracy": 20.0, "kl": 0.1},
                                            {"k": 2, "accuracy": 22.0, "kl": 0.2}],
         "mean_frame": {"k": 2, "accuracy": 21.0, "kl": 0.15}}
    sec = build_bayes(make_results({"triplet/lensless": TRIPLET}, bayes={"quadruplet/unet": b}))
    main, frames = [x for x in sec.blocks if isinstance(x, Table)]
    assert main.rows[0].cells[0] == "quadruplet, reconstructed (U-Net)"
    assert main.rows[0].cells[-1] == f"{seed_study.KL[('quadruplet', 'reconstructed')]:.2f}"
    assert [r.cells[1] for r in frames.rows] == [1, 2, "mean of 2 frames"]


def test_the_document_has_every_section_in_order_and_renders(tmp_path):
    res = make_results({"triplet/lensless": TRIPLET, "ce/lensless": CE})
    doc = build_document(res, config(), ReportFigures(runs={"triplet/lensless": [tmp_path / "missing.png"]}))
    titles = [b.title for b in doc.blocks if isinstance(b, Section)]
    assert titles == ["Camera and measured degradation", "Sample captures", "Tables 1-4 (the seed's layout)",
                      "Baselines", "Classifiers", "Reconstruction quality", "Bayesian inference",
                      "Figures of every run", "Provenance"]
    assert doc.figures == []                          # a missing figure is left out
    md = render_markdown(doc, tmp_path)
    assert md.count("\n## ") == 9
    json.dumps(res.to_json())                         # results.json is plain JSON


# ----------------------------------------------------------------------------------------------
# the stage engine


def engine_context(tmp_path: Path, stages: list[Stage], log: list[str]) -> StageContext:
    return StageContext(cfg=config(), out=tmp_path, device="cpu", outputs={},
                        stages={s.name: s for s in stages}, log=log.append)


def plan() -> list[Stage]:
    return assign_keys([Stage("a", "make", {"n": 1}), Stage("b", "use", {"m": 2}, ["a"])],
                       {"make": 1, "use": 1})


def test_keys_follow_params_versions_and_upstream_keys():
    a, b = plan()
    a2, b2 = assign_keys([Stage("a", "make", {"n": 2}), Stage("b", "use", {"m": 2}, ["a"])],
                         {"make": 1, "use": 1})
    assert a.key != a2.key and b.key != b2.key               # upstream change: downstream too
    a3, b3 = assign_keys([Stage("a", "make", {"n": 1}), Stage("b", "use", {"m": 2}, ["a"])],
                         {"make": 1, "use": 2})
    assert a3.key == a.key and b3.key != b.key               # a kind's version
    with pytest.raises(ValueError, match="depends on"):
        assign_keys([Stage("b", "use", {}, ["a"]), Stage("a", "make", {})], {"make": 1, "use": 1})
    with pytest.raises(ValueError, match="kind 'other' has no version"):
        assign_keys([Stage("a", "other", {})], {"make": 1})


def test_run_stages_skips_finished_stages_and_reruns_one_whose_output_is_gone(tmp_path):
    calls: list[str] = []

    def make(stage, d, ctx):
        calls.append(stage.name)
        (d / "out.txt").write_text("x")
        return {"file": str(d / "out.txt")}

    def use(stage, d, ctx):
        calls.append(stage.name)
        return {"got": ctx.outputs["a"]["file"]}

    stages, log = plan(), []
    first = run_stages(stages, engine_context(tmp_path, stages, log), {"make": make, "use": use})
    assert [r.status for r in first] == ["ran", "ran"] and calls == ["a", "b"]
    done = read_done(stages[0].directory(tmp_path))
    assert done.files == [str(Path("stages") / stages[0].directory(tmp_path).name / "out.txt")]
    again = run_stages(stages, engine_context(tmp_path, stages, log), {"make": make, "use": use})
    assert [r.status for r in again] == ["skipped", "skipped"] and calls == ["a", "b"]
    assert again[1].record.outputs["got"].endswith("out.txt")

    (stages[0].directory(tmp_path) / "out.txt").unlink()          # an output file is gone
    (stages[1].directory(tmp_path) / "DONE.json").write_text("{}")  # a marker that is no record
    third = run_stages(stages, engine_context(tmp_path, stages, log), {"make": make, "use": use})
    assert [r.status for r in third] == ["ran", "ran"] and third[0].record.resumed is True


def test_a_failing_stage_function_surfaces_as_a_stage_error_with_its_traceback(tmp_path):
    def boom(stage, d, ctx):
        raise ZeroDivisionError("division by zero")

    stages, log = plan(), []
    with pytest.raises(StageError) as e:
        run_stages(stages, engine_context(tmp_path, stages, log), {"make": boom, "use": boom})
    assert str(e.value).startswith("stage a failed: ZeroDivisionError: division by zero (details: ")
    d = stages[0].directory(tmp_path)
    failed = json.loads((d / "FAILED.json").read_text())
    assert failed["type"] == "ZeroDivisionError" and "raise ZeroDivisionError" in failed["traceback"]
    assert not (d / "DONE.json").exists() and len(json.loads((d / "ATTEMPTS.json").read_text())) == 1
    assert not stages[1].directory(tmp_path).exists()        # stages after it did not run


def test_the_study_package_neither_probes_signatures_nor_swallows_exceptions():
    offenders = []
    for path in (SRC / "study").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if "inspect" in names:
                    offenders.append(f"{path.name}: imports inspect")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "suppress":
                if any(getattr(a, "id", None) in ("Exception", "BaseException") for a in node.args):
                    offenders.append(f"{path.name}:{node.lineno}: suppress(Exception)")
            if isinstance(node, ast.ExceptHandler) and getattr(node.type, "id", None) == "Exception":
                if not any(isinstance(n, ast.Raise) for n in ast.walk(node)):
                    offenders.append(f"{path.name}:{node.lineno}: except Exception without raise")
    assert offenders == []


def test_a_sample_grid_of_an_unreadable_set_becomes_a_note_not_a_crash(tmp_path):
    from opticsfree.study.report import build_samples, draw_figures

    res = make_results({"triplet/lensless": TRIPLET}, upper=False)     # captures: /x/lensless
    log: list[str] = []
    ctx = StageContext(cfg=config(), out=tmp_path, device="cpu", outputs={}, stages={}, log=log.append)
    figs = draw_figures(ctx, res, tmp_path)
    assert figs.samples is None and len(figs.problems) == 1
    assert figs.problems[0].startswith("the sample grid not drawn: ") and "/x/lensless" in figs.problems[0]
    assert log == [f"  report: {figs.problems[0]}"]
    sec = build_samples(figs, config())
    assert [b.text for b in sec.blocks] == figs.problems
