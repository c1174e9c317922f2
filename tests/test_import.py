"""opticsfree import: pairing by stem, labels from folders or CSV, unmatched files listed."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import opticsfree.cli.sets  # noqa: F401 - registers the commands
from opticsfree.captures.check import check_capture_set
from opticsfree.captures.format import open_capture_set
from opticsfree.captures.importer import import_captures
from opticsfree.captures.writer import read_image
from opticsfree.cli.common import app
from opticsfree.errors import ConfigError, DataError

runner = CliRunner()


def _img(path, seed, size=8, mode="RGB", fmt=None):
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, format=fmt)
    return path


def _make_inputs(tmp_path, layout="class", classes=("cat", "dog"), per_class=3):
    """originals/<class>/<stem>.png (or originals/<split>/<class>/...), captures in nested folders."""
    orig, lens = tmp_path / "originals", tmp_path / "lensless"
    stems = {}
    k = 0
    for c in classes:
        for i in range(per_class):
            stem = f"{c}_s_{i:06d}"
            split = "test" if i == 0 else "train"
            sub = orig / c if layout == "class" else (orig / split / c if layout == "split" else orig)
            _img(sub / f"{stem}.png", seed=k)
            _img(lens / f"session{k % 2}" / f"{stem}.jpeg", seed=100 + k, fmt="JPEG")
            stems[stem] = (c, split)
            k += 1
    return orig, lens, stems


def test_pairs_by_stem_labels_from_class_folders(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path)
    # Unmatched on both sides.
    _img(lens / "extra" / "lonely_capture.jpeg", seed=7, fmt="JPEG")
    _img(orig / "dog" / "lonely_original.png", seed=8)
    out = tmp_path / "set"
    rep = import_captures(lens, orig, out, notes="bench rig 1")
    assert rep.n_imported == 6 and rep.splits == {"train": 6} and rep.classes == ["cat", "dog"]
    assert rep.lensless_without_original == [str(lens / "extra" / "lonely_capture.jpeg")]
    assert rep.originals_without_capture == [str(orig / "dog" / "lonely_original.png")]
    assert rep.problems == []
    text = (out / "unmatched.txt").read_text()
    assert "lonely_capture.jpeg" in text and "lonely_original.png" in text

    assert check_capture_set(out).ok
    cs = open_capture_set(out)
    assert cs.manifest["camera"] == {"type": "real", "notes": "bench rig 1"}
    assert cs.manifest["seed"] is None
    assert cs.manifest["source"] == {"dataset": "import", "copy": str(orig.resolve())}
    assert cs.manifest["splits"] == {"train": 6}
    for r in cs.rows:
        c, _ = stems[r.id]
        assert r.label_name == c and cs.classes[r.label] == c
        src_l = next(lens.rglob(f"{r.id}.jpeg"))
        assert r.lensless.endswith(".jpeg")
        assert (out / r.lensless).read_bytes() == src_l.read_bytes()  # capture kept as-is
        assert r.original.endswith(".png")
        np.testing.assert_array_equal(read_image(out / r.original), read_image(orig / c / f"{r.id}.png"))
    assert not list(tmp_path.glob(".set.tmp-import*"))


def test_split_from_originals_folders(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path, layout="split")
    rep = import_captures(lens, orig, tmp_path / "set")
    assert rep.splits == {"train": 4, "test": 2}
    cs = open_capture_set(tmp_path / "set")
    for r in cs.rows:
        assert (r.label_name, r.split) == stems[r.id]
        assert r.original == f"originals/{r.split}/{r.label_name}/{r.id}.png"
    assert check_capture_set(tmp_path / "set").ok


def test_labels_from_csv(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path, layout="flat")
    csv_path = tmp_path / "labels.csv"
    ids = sorted(stems)
    lines = ["id,label_name,split"]
    for s in ids[:-1]:  # the last id has no label
        c, sp = stems[s]
        lines.append(f"{s},{c},{sp}")
    lines.append("ghost_id,cat,train")  # a label without files
    csv_path.write_text("\n".join(lines) + "\n")
    rep = import_captures(lens, orig, tmp_path / "set", labels_csv=csv_path)
    assert rep.n_imported == 5
    assert rep.unlabelled == [str(orig / f"{ids[-1]}.png")]
    assert rep.labels_without_files == ["ghost_id"]
    cs = open_capture_set(tmp_path / "set")
    assert {r.id: (r.label_name, r.split) for r in cs.rows} == {s: stems[s] for s in ids[:-1]}
    assert check_capture_set(tmp_path / "set").ok
    text = (tmp_path / "set" / "unmatched.txt").read_text()
    assert f"{ids[-1]}.png" in text and "ghost_id" in text


def test_csv_without_split_uses_default_split(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path, layout="flat")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,label_name\n" + "".join(f"{s},{c}\n" for s, (c, _) in stems.items()))
    rep = import_captures(lens, orig, tmp_path / "set", labels_csv=csv_path, split="val")
    assert rep.splits == {"val": 6}


def test_bad_csv_header_named(tmp_path):
    orig, lens, _ = _make_inputs(tmp_path, layout="flat")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("name,class\na,b\n")
    with pytest.raises(DataError, match=r"labels\.csv.*id,label_name"):
        import_captures(lens, orig, tmp_path / "set", labels_csv=csv_path)


def test_nothing_matches(tmp_path):
    orig, lens = tmp_path / "o", tmp_path / "l"
    _img(orig / "cat" / "a.png", 0)
    _img(lens / "b.jpeg", 1, fmt="JPEG")
    with pytest.raises(DataError, match="matched"):
        import_captures(lens, orig, tmp_path / "set")
    assert not (tmp_path / "set").exists()
    res = runner.invoke(app, ["import", "--lensless", str(lens), "--originals", str(orig),
                              "--out", str(tmp_path / "set")])
    assert res.exit_code == 2 and "error:" in res.output
    # Files directly in originals/ have no class folder: no label, nothing to import.
    _img(orig / "b.png", 2)
    with pytest.raises(DataError, match="1 without label"):
        import_captures(lens, orig, tmp_path / "set")


def test_refuses_foreign_output_and_reimports(tmp_path):
    orig, lens, _ = _make_inputs(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        import_captures(lens, orig, foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"

    out = tmp_path / "set"
    import_captures(lens, orig, out)
    _img(orig / "cat" / "cat_new.png", 50)
    _img(lens / "cat_new.jpeg", 51, fmt="JPEG")
    rep = import_captures(lens, orig, out)  # same inputs: replaced
    assert rep.n_imported == 7 and check_capture_set(out).ok
    other = tmp_path / "other_lensless"
    other.mkdir()
    for p in lens.rglob("*.jpeg"):
        (other / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError, match="not empty"):
        import_captures(other, orig, out)
    (tmp_path / "empty").mkdir()
    assert import_captures(lens, orig, tmp_path / "empty").n_imported == 7


def test_png_and_unreadable_captures(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path)
    ids = sorted(stems)
    # One capture as PNG (kept as PNG), one truncated (listed, skipped).
    png_cap = next(lens.rglob(f"{ids[0]}.jpeg"))
    png_cap.unlink()
    _img(png_cap.with_suffix(".png"), 200)
    bad = next(lens.rglob(f"{ids[1]}.jpeg"))
    bad.write_bytes(bad.read_bytes()[:50])
    rep = import_captures(lens, orig, tmp_path / "set")
    assert rep.n_imported == 5
    assert len(rep.unreadable) == 1 and str(bad) in rep.unreadable[0]
    cs = open_capture_set(tmp_path / "set")
    row = next(r for r in cs.rows if r.id == ids[0])
    assert row.lensless.endswith(".png")
    assert (tmp_path / "set" / row.lensless).read_bytes() == png_cap.with_suffix(".png").read_bytes()
    assert ids[1] not in {r.id for r in cs.rows}
    assert check_capture_set(tmp_path / "set").ok


def test_duplicate_stems_refused(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path)
    s = sorted(stems)[0]
    _img(lens / "again" / f"{s}.jpeg", 300, fmt="JPEG")
    with pytest.raises(DataError, match="twice"):
        import_captures(lens, orig, tmp_path / "set")


def test_cli_lists_unmatched(tmp_path):
    orig, lens, _ = _make_inputs(tmp_path)
    _img(lens / "zz_unpaired.jpeg", 9, fmt="JPEG")
    out = tmp_path / "set"
    res = runner.invoke(app, ["import", "--lensless", str(lens), "--originals", str(orig),
                              "--out", str(out), "--notes", "rig"])
    assert res.exit_code == 0, res.output
    assert "imported 6 scenes" in res.stdout
    assert "zz_unpaired.jpeg" in res.stdout and "unmatched.txt" in res.stdout
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0
    assert open_capture_set(out).manifest["camera"]["notes"] == "rig"
    help_ = runner.invoke(app, ["import", "--help"])
    assert help_.exit_code == 0
    for flag in ("--lensless", "--originals", "--labels", "--split", "--out", "--notes"):
        assert flag in help_.stdout


def test_process_pool_gives_same_set(tmp_path, monkeypatch):
    from opticsfree.utils import parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)  # worker processes even for a few pairs
    orig, lens, _ = _make_inputs(tmp_path)
    bad = sorted(lens.rglob("*.jpeg"))[2]
    bad.write_bytes(bad.read_bytes()[:60])
    a = import_captures(lens, orig, tmp_path / "a", workers=1)
    b = import_captures(lens, orig, tmp_path / "b", workers=2)
    assert a.unreadable == b.unreadable and len(a.unreadable) == 1
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b" / "index.csv").read_bytes()
    for r in open_capture_set(tmp_path / "a").rows:
        for rel in (r.original, r.lensless):
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


# --test-fraction: a seeded, stratified test split; empty class folders named


def _test_ids(out):
    return sorted(r.id for r in open_capture_set(out).rows if r.split == "test")


def test_test_fraction_holds_out_a_stratified_seeded_test_split(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path, classes=("cat", "dog", "eel"), per_class=5)
    rep = import_captures(lens, orig, tmp_path / "a", test_fraction=0.4, seed=3)
    assert rep.splits == {"train": 9, "test": 6}
    cs = open_capture_set(tmp_path / "a")
    per_class = Counter(r.label_name for r in cs.rows if r.split == "test")
    assert per_class == {"cat": 2, "dog": 2, "eel": 2}           # stratified
    assert all(r.original.startswith(f"originals/{r.split}/") for r in cs.rows)
    assert cs.manifest["splits"] == {"train": 9, "test": 6}
    assert cs.manifest["import"]["test_fraction"] == 0.4 and cs.manifest["import"]["seed"] == 3
    assert check_capture_set(tmp_path / "a").ok
    # the same seed gives the same split, another seed another one
    import_captures(lens, orig, tmp_path / "b", test_fraction=0.4, seed=3)
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b" / "index.csv").read_bytes()
    import_captures(lens, orig, tmp_path / "c", test_fraction=0.4, seed=4)
    assert _test_ids(tmp_path / "c") != _test_ids(tmp_path / "a")
    # a plain import (fraction 0) is today's: every scene in train, manifest as before
    rep = import_captures(lens, orig, tmp_path / "d")
    assert rep.splits == {"train": 15}
    assert set(open_capture_set(tmp_path / "d").manifest["import"]) == {"lensless", "originals",
                                                                        "labels", "split"}
    # rerunning into the same set with another fraction replaces the earlier import
    assert import_captures(lens, orig, tmp_path / "d", test_fraction=0.2).splits == {
        "train": 12, "test": 3}


def test_test_fraction_that_cannot_stratify_is_a_one_line_error(tmp_path):
    orig, lens, stems = _make_inputs(tmp_path, classes=("cat", "dog"), per_class=3)
    _img(orig / "eel" / "eel_only.png", seed=60)
    _img(lens / "eel_only.jpeg", seed=61, fmt="JPEG")
    with pytest.raises(DataError, match=r"--test-fraction 0.5: cannot stratify .*'eel' \(1 scene\)"):
        import_captures(lens, orig, tmp_path / "set", test_fraction=0.5)
    res = runner.invoke(app, ["import", "--lensless", str(lens), "--originals", str(orig),
                              "--out", str(tmp_path / "set"), "--test-fraction", "0.5"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: --test-fraction 0.5: cannot stratify") and "'eel'" in res.stderr
    assert not (tmp_path / "set").exists()
    (orig / "eel" / "eel_only.png").unlink()
    # fewer test scenes than classes (1 of 6 scenes for 2 classes)
    with pytest.raises(DataError, match=r"--test-fraction 0.1: cannot stratify 6 train scenes of 2 classes"):
        import_captures(lens, orig, tmp_path / "set", test_fraction=0.1)
    with pytest.raises(ConfigError, match=r"--test-fraction: expected .*\[0, 0.9\]"):
        import_captures(lens, orig, tmp_path / "set", test_fraction=0.95)
    # the folders already give a test split: refused rather than mixed
    orig2, lens2, _ = _make_inputs(tmp_path / "s", layout="split")
    with pytest.raises(DataError, match="already put 2 scene"):
        import_captures(lens2, orig2, tmp_path / "set", test_fraction=0.5)


def test_cli_says_when_the_set_has_no_test_split_and_names_the_option(tmp_path):
    orig, lens, _ = _make_inputs(tmp_path, classes=("cat", "dog"), per_class=4)
    args = ["import", "--lensless", str(lens), "--originals", str(orig)]
    res = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("warning: ") and "no test split" in last and "--test-fraction" in last
    res = runner.invoke(app, args + ["--out", str(tmp_path / "b"), "--test-fraction", "0.5",
                                     "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "(train=4, test=4)" in res.stdout and "no test split" not in res.output
    help_ = " ".join(runner.invoke(app, ["import", "--help"]).stdout.split())
    assert "--test-fraction" in help_ and "--seed" in help_


def test_empty_class_folders_are_named_in_one_warning_line(tmp_path):
    orig, lens, _ = _make_inputs(tmp_path, classes=("cat", "dog"))
    (orig / "bird").mkdir()
    (orig / "ant").mkdir()
    (orig / "ant" / "notes.txt").write_text("no images here")
    rep = import_captures(lens, orig, tmp_path / "set")
    assert rep.classes == ["cat", "dog"]                     # dropped: no pair to label
    assert rep.empty_class_folders == {"ant": "ant", "bird": "bird"}
    assert rep.dropped_classes == ["ant", "bird"]
    res = runner.invoke(app, ["import", "--lensless", str(lens), "--originals", str(orig),
                              "--out", str(tmp_path / "set2")])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if "without images" in ln]
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: {orig}: 2 class folder(s) without images: ant, bird")
    assert "'ant', 'bird' left out of the class list" in lines[0]
    # a class whose folder is empty in one split but has pairs in another is kept
    orig2, lens2, _ = _make_inputs(tmp_path / "s", layout="split")
    (orig2 / "val" / "cat").mkdir(parents=True)
    rep = import_captures(lens2, orig2, tmp_path / "set3")
    assert rep.empty_class_folders == {"val/cat": "cat"} and rep.dropped_classes == []
    warning = rep.empty_folders_warning()
    assert "val/cat" in warning and "'cat' kept" in warning and "left out" not in warning
    # no empty folder: no warning
    (orig / "bird").rmdir()
    shutil.rmtree(orig / "ant")
    assert import_captures(lens, orig, tmp_path / "set4").empty_folders_warning() is None
