"""opticsfree check: a valid set passes; every kind of corruption is found and the bad file named."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from PIL import Image
from typer.testing import CliRunner

import opticsfree.cli.sets  # noqa: F401 - registers the commands
from opticsfree.captures.check import check_capture_set, inspect_image
from opticsfree.captures.format import read_index, write_index
from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.common import app
from opticsfree.utils.io import read_json, write_json

runner = CliRunner()


@pytest.fixture
def cset(tmp_path):
    return make_capture_set(tmp_path / "set", n_classes=3, per_class=4, size=8)


def _rows(root):
    return read_index(root)


def _rewrite(root, rows, frames=False):
    write_index(root, rows, frames=frames)


def _files(report):
    return [p["file"] for p in report.problems]


def _run_check(root, *extra):
    res = runner.invoke(app, ["check", str(root), *extra])
    return res


def test_valid_set_passes(cset):
    rep = check_capture_set(cset)
    assert rep.ok, rep.problems
    assert rep.summary["n_rows"] == 24
    assert rep.summary["splits"] == {"train": 12, "test": 12}
    assert rep.summary["sizes"] == {"original": "8x8x3", "lensless": "8x8x3"}
    res = _run_check(cset, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["n_rows"] == 24 and out["problems"] == []
    assert out["splits"] == {"train": 12, "test": 12}
    res = _run_check(cset)
    assert res.exit_code == 0 and res.stdout.startswith("OK")


def test_valid_multiframe_and_grayscale_sets_pass(tmp_path):
    root = make_capture_set(tmp_path / "mf", frames=3, channels=1, per_class=3)
    rep = check_capture_set(root)
    assert rep.ok, rep.problems
    assert rep.summary["n_rows"] == 3 * 3 * 3 * 2
    assert rep.summary["splits"] == {"train": 9, "test": 9}
    assert rep.summary["sizes"]["lensless"] == "8x8x1"


def test_missing_frame_detected(tmp_path):
    root = make_capture_set(tmp_path / "mf", frames=2, per_class=3)
    rows = _rows(root)
    victim = rows[3]
    _rewrite(root, [r for r in rows if r is not victim], frames=True)
    rep = check_capture_set(root)
    assert not rep.ok
    assert any(victim.id in p["problem"] and "frames" in p["problem"] for p in rep.problems)


def test_truncated_jpeg_named(cset):
    victim = _rows(cset)[5].lensless
    p = cset / victim
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    res = _run_check(cset, "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False
    assert [x["file"] for x in out["problems"]] == [victim]
    assert "truncated" in out["problems"][0]["problem"]


def test_jpeg_missing_only_end_marker_named(cset):
    victim = _rows(cset)[2].lensless
    p = cset / victim
    p.write_bytes(p.read_bytes()[:-2])
    assert _files(check_capture_set(cset)) == [victim]


def test_png_missing_iend_named(cset):
    # PIL decodes such a PNG without complaint; the end-chunk check must catch it.
    victim = _rows(cset)[7].original
    p = cset / victim
    p.write_bytes(p.read_bytes()[:-12])
    rep = check_capture_set(cset)
    assert _files(rep) == [victim]
    assert "IEND" in rep.problems[0]["problem"]


def test_corrupt_pixels_found_only_with_decode(cset):
    victim = _rows(cset)[4].lensless
    p = cset / victim
    data = bytearray(p.read_bytes())
    # Keep header and end marker, destroy the entropy-coded data with invalid markers.
    sos = data.index(b"\xff\xda")
    for i in range(sos + 20, len(data) - 2, 2):
        data[i], data[i + 1] = 0xFF, 0xC8
    p.write_bytes(bytes(data))
    assert inspect_image(str(p), decode=False)[1] is None
    assert _files(check_capture_set(cset, decode=True)) == [victim]


def test_deleted_file_named(cset):
    rows = _rows(cset)
    (cset / rows[1].lensless).unlink()
    (cset / rows[9].original).unlink()
    rep = check_capture_set(cset)
    assert sorted(_files(rep)) == sorted([rows[1].lensless, rows[9].original])
    assert all(p["problem"] == "missing" for p in rep.problems)
    res = _run_check(cset)
    assert res.exit_code == 1
    assert rows[1].lensless in res.stdout and rows[9].original in res.stdout


def test_duplicate_id_row(cset):
    rows = _rows(cset)
    dup = dataclasses.replace(rows[3], lensless=rows[4].lensless)
    _rewrite(cset, rows + [dup])
    rep = check_capture_set(cset)
    assert not rep.ok
    dups = [p for p in rep.problems if "duplicate" in p["problem"]]
    assert dups and dups[0]["file"] == "index.csv" and repr(rows[3].id) in dups[0]["problem"]
    assert any("already used" in p["problem"] for p in rep.problems)
    assert _run_check(cset).exit_code == 1


def test_wrong_label_name_and_out_of_range_label(cset):
    rows = _rows(cset)
    classes = read_json(cset / "manifest.json")["classes"]
    wrong = next(c for c in classes if c != rows[0].label_name)
    rows[0] = dataclasses.replace(rows[0], label_name=wrong)
    rows[1] = dataclasses.replace(rows[1], label=7)
    _rewrite(cset, rows)
    rep = check_capture_set(cset)
    msgs = [p["problem"] for p in rep.problems]
    assert any("label_name" in m and repr(wrong) in m and rows[0].lensless in m for m in msgs)
    assert any("label 7 out of range" in m for m in msgs)
    assert set(_files(rep)) == {"index.csv"}


def test_escaping_paths_named(cset, tmp_path):
    rows = _rows(cset)
    outside = tmp_path / "outside.jpeg"
    outside.write_bytes((cset / rows[0].lensless).read_bytes())
    rows[0] = dataclasses.replace(rows[0], lensless="../outside.jpeg")
    rows[1] = dataclasses.replace(rows[1], original=str(outside))
    _rewrite(cset, rows)
    rep = check_capture_set(cset)
    assert sorted(_files(rep)) == sorted(["../outside.jpeg", str(outside)])
    assert all("escapes" in p["problem"] for p in rep.problems)
    res = _run_check(cset, "--json")
    assert res.exit_code == 1 and "../outside.jpeg" in res.stdout


def test_symlink_out_of_the_set_named(cset, tmp_path):
    rows = _rows(cset)
    target = tmp_path / "elsewhere.jpeg"
    target.write_bytes((cset / rows[2].lensless).read_bytes())
    (cset / rows[2].lensless).unlink()
    os.symlink(target, cset / rows[2].lensless)
    assert _files(check_capture_set(cset)) == [rows[2].lensless]


def test_resized_image_named_with_majority(cset):
    rows = _rows(cset)
    victim = rows[6].lensless
    Image.new("RGB", (10, 8)).save(cset / victim, format="JPEG")
    rep = check_capture_set(cset)
    assert _files(rep) == [victim]
    assert "8x10x3" in rep.problems[0]["problem"] and "8x8x3" in rep.problems[0]["problem"]
    assert rep.summary["sizes"]["lensless"] == "8x8x3"


def test_split_sizes_against_manifest(cset):
    m = read_json(cset / "manifest.json")
    m["splits"] = {"train": 11, "test": 12, "val": 3}
    write_json(cset / "manifest.json", m)
    msgs = [p["problem"] for p in check_capture_set(cset).problems]
    assert any("'train'" in x and "11" in x and "12" in x for x in msgs)
    assert any("'val'" in x for x in msgs)
    assert len(msgs) == 2


def test_missing_manifest_and_index(cset, tmp_path):
    (cset / "manifest.json").unlink()
    rep = check_capture_set(cset)
    assert not rep.ok and _files(rep) == ["manifest.json"]
    res = _run_check(cset, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["problems"][0]["file"] == "manifest.json"
    (cset / "index.csv").unlink()
    assert sorted(_files(check_capture_set(cset))) == ["index.csv", "manifest.json"]
    res = _run_check(tmp_path / "nope")
    assert res.exit_code == 1 and "not found" in res.stdout


def test_bad_manifest_and_malformed_index_lines(cset):
    m = read_json(cset / "manifest.json")
    del m["camera"]
    write_json(cset / "manifest.json", m)
    text = (cset / "index.csv").read_text().splitlines()
    text[3] = text[3].replace(",0,", ",zero,", 1) if ",0," in text[3] else text[3].replace(",1,", ",x,", 1)
    text.append("train,onlytwo")
    (cset / "index.csv").write_text("\n".join(text) + "\n")
    rep = check_capture_set(cset)
    msgs = [f"{p['file']}: {p['problem']}" for p in rep.problems]
    assert any(x.startswith("manifest.json: missing key(s) camera") for x in msgs)
    assert any(x.startswith("index.csv: line 4:") for x in msgs)
    assert any(x.startswith(f"index.csv: line {len(text)}:") for x in msgs)


def test_pool_gives_same_report(cset, monkeypatch):
    from opticsfree.utils import parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)  # worker processes even for a small set
    rows = _rows(cset)
    p = cset / rows[0].lensless
    p.write_bytes(p.read_bytes()[:40])
    (cset / rows[3].original).unlink()
    one = check_capture_set(cset, workers=1)
    two = check_capture_set(cset, workers=2)
    assert one.problems == two.problems and len(one.problems) == 2
    assert one.summary == two.summary


def test_help_lists_options():
    res = runner.invoke(app, ["check", "--help"])
    assert res.exit_code == 0 and "--json" in res.stdout


def test_check_and_a_reader_on_a_file_say_it_is_a_file(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a set")
    r = CliRunner().invoke(app, ["check", str(afile)])
    assert r.exit_code == 1 and "is a file; expected a capture set directory" in r.output
    from opticsfree.captures.format import read_manifest
    from opticsfree.errors import DataError

    with pytest.raises(DataError, match="is a file; expected a capture set directory"):
        read_manifest(afile)
