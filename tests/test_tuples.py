"""opticsfree tuples: header, invariants, determinism, errors."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

import opticsfree.cli.sets  # noqa: F401 - registers the commands
from opticsfree.captures.format import read_index, write_index
from opticsfree.captures.testing import make_capture_set
from opticsfree.captures.tuples import TUPLE_COLUMNS, make_tuples, read_tuples
from opticsfree.cli.common import app
from opticsfree.errors import DataError

runner = CliRunner()
HEADER = "anchor_img,positive_img,close_positive_img,negative_img,label,label_name"


@pytest.fixture
def cset(tmp_path):
    return make_capture_set(tmp_path / "set", n_classes=4, per_class=5, size=8)


def _check_invariants(root, split, tuples):
    rows = [r for r in read_index(root) if r.split == split]
    assert [t["anchor_img"] for t in tuples] == [r.lensless for r in rows]  # one per capture
    orig_label = {r.original: r.label for r in rows}
    orig_id = {r.original: r.id for r in rows}
    for t, r in zip(tuples, rows):
        assert t["positive_img"] == r.original
        assert t["label"] == r.label and t["label_name"] == r.label_name
        cp, neg = t["close_positive_img"], t["negative_img"]
        assert orig_label[cp] == r.label and orig_id[cp] != r.id
        assert orig_label[neg] != r.label
        for p in (cp, neg):
            assert (root / p).is_file()


def test_header_and_invariants(cset):
    path = make_tuples(cset, "train", seed=3)
    assert path == cset / "tuples_train.csv"
    assert path.read_text().splitlines()[0] == HEADER
    tuples = read_tuples(path)
    assert len(tuples) == 20
    _check_invariants(cset, "train", tuples)
    # Draws cover more than one choice (not a constant pick).
    assert len({t["close_positive_img"] for t in tuples}) > 4
    assert len({t["negative_img"] for t in tuples}) > 4


def test_multiframe_rows_and_test_split(tmp_path):
    root = make_capture_set(tmp_path / "mf", n_classes=3, per_class=3, frames=2)
    tuples = read_tuples(make_tuples(root, "test", seed=0))
    assert len(tuples) == 3 * 3 * 2
    _check_invariants(root, "test", tuples)
    assert (root / "tuples_test.csv").is_file()


def test_deterministic_and_seed_dependent(cset):
    a = make_tuples(cset, seed=1).read_bytes()
    b = make_tuples(cset, seed=1).read_bytes()
    assert a == b
    c = make_tuples(cset, seed=2).read_bytes()
    assert c != a
    ta = list(csv.reader(a.decode().splitlines()))
    tc = list(csv.reader(c.decode().splitlines()))
    assert [r[:2] for r in ta] == [r[:2] for r in tc]  # anchors and positives fixed
    assert sum(x != y for x, y in zip(ta, tc)) > 5


def test_class_with_one_image_named(cset):
    rows = read_index(cset)
    victims = [r for r in rows if r.split == "train" and r.label_name == "class2"]
    keep = [r for r in rows if r not in victims[1:]]
    write_index(cset, keep, frames=False)
    with pytest.raises(DataError, match="class2"):
        make_tuples(cset)
    res = runner.invoke(app, ["tuples", str(cset), "--split", "train"])
    assert res.exit_code == 2 and "class2" in res.output
    # The test split is unaffected.
    assert len(read_tuples(make_tuples(cset, "test"))) == 20


def test_single_class_split_and_missing_split(cset):
    rows = [r for r in read_index(cset) if not (r.split == "train" and r.label != 0)]
    write_index(cset, rows, frames=False)
    with pytest.raises(DataError, match="2 classes"):
        make_tuples(cset, "train")
    with pytest.raises(DataError, match="no 'val' split"):
        make_tuples(cset, "val")
    with pytest.raises(DataError, match="split"):
        make_tuples(cset, "../x")


def test_read_tuples_validates_header(cset, tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("anchor,positive,label\na,b,1\n")
    with pytest.raises(DataError, match=r"t\.csv.*anchor_img,positive_img,close_positive_img"):
        read_tuples(bad)
    bad.write_text(HEADER + "\na,b,c,d,notint,x\n")
    with pytest.raises(DataError, match="line 2"):
        read_tuples(bad)
    with pytest.raises(DataError, match="not found"):
        read_tuples(tmp_path / "none.csv")
    assert TUPLE_COLUMNS == HEADER.split(",")


def test_cli(cset):
    res = runner.invoke(app, ["tuples", str(cset), "--split", "test", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert "20 tuples" in res.stdout
    assert (cset / "tuples_test.csv").read_bytes() == make_tuples(cset, "test", seed=5).read_bytes()
    assert runner.invoke(app, ["tuples", "--help"]).exit_code == 0
