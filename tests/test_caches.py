"""Caches are never stale and figures never overwrite what they should not: a source file whose
bytes change while its size and modification time are put back (``cp -p``, ``rsync -t``) is
read again by every cache (the decoded-dataset cache, the capture-set loader, a run's prototype
cache), and ``show`` refuses files it did not write and paths inside capture sets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from opticsfree.captures.format import read_index
from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.data import load_dataset
from opticsfree.utils.io import file_state

runner = CliRunner()


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args])


def replace_keeping_size_and_mtime(path: Path, pixels: np.ndarray, fmt: str, **save) -> None:
    """Rewrite ``path`` with other pixels, the same byte size and the old modification time."""
    st = path.stat()
    Image.fromarray(pixels).save(path, format=fmt, **save)
    assert path.stat().st_size == st.st_size, "the test needs a format whose size depends only on the shape"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_file_state_sees_a_rewrite_with_size_and_mtime_put_back(tmp_path):
    p = tmp_path / "a.bmp"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p, format="BMP")
    before = file_state(p)
    replace_keeping_size_and_mtime(p, np.full((4, 4, 3), 200, np.uint8), "BMP")
    assert file_state(p) != before and file_state(tmp_path / "missing") is None


def test_a_folder_dataset_is_decoded_again_when_a_file_is_replaced(tmp_path):
    root = tmp_path / "tree"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 30 + i, np.uint8)).save(root / split / c / f"{i}.bmp")
    first = load_dataset("folder", data=root)
    target = root / "train" / "a" / "0.bmp"
    replace_keeping_size_and_mtime(target, np.full((8, 8, 3), 220, np.uint8), "BMP")
    second = load_dataset("folder", data=root)
    assert second.splits["train"].images.max() == 220  # the new pixels, not the cached old ones
    assert first.splits["train"].images.max() < 220


@pytest.fixture
def uncompressed_set(tmp_path):
    """A capture set whose originals are uncompressed PNGs (their size depends only on the shape)."""
    root = make_capture_set(tmp_path / "set", n_classes=3, per_class=12, size=16)
    for r in read_index(root):
        p = root / r.original
        Image.open(p).convert("RGB").save(p, format="PNG", compress_level=0)
    return root


def test_the_loader_cache_reads_a_replaced_capture_again(uncompressed_set):
    from opticsfree.captures.loader import load_captures

    root = uncompressed_set
    before = load_captures(root, "train").original.clone()
    row = read_index(root)[0]
    replace_keeping_size_and_mtime(root / row.original, np.full((16, 16, 3), 255, np.uint8), "PNG", compress_level=0)
    after = load_captures(root, "train").original
    assert not np.array_equal(before.numpy(), after.numpy()) and int(after[0].min()) == 255


def test_a_runs_prototype_cache_follows_its_train_originals(uncompressed_set, tmp_path):
    from opticsfree.training import train

    root = uncompressed_set
    run = tmp_path / "run"
    train({"captures": str(root), "loss": "triplet", "epochs": 1, "backbone": "cnn4", "width": 4,
           "embedding_dim": 8, "batch_size": 24, "warmup_epochs": 0.5, "val_prototypes": 50, "threads": 1},
          run, show_progress=False)
    args = ["predict", run, root, "--split", "test", "--json"]
    first = json.loads(invoke(args).stdout)
    assert first["prototypes_source"] == "computed"
    again = json.loads(invoke(args).stdout)
    assert again["prototypes_source"] == "cache"
    rng = np.random.default_rng(0)
    for r in read_index(root):
        if r.split == "train":
            replace_keeping_size_and_mtime(root / r.original, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                                           "PNG", compress_level=0)
    changed = json.loads(invoke(args).stdout)
    assert changed["prototypes_source"] == "computed"  # not the stale cache
    p1 = [x["probability"] for x in first["predictions"]]
    p2 = [x["probability"] for x in changed["predictions"]]
    assert p1 != p2


def test_show_refuses_files_it_did_not_write_and_paths_inside_a_set(tmp_path):
    root = make_capture_set(tmp_path / "set", n_classes=2, per_class=4, size=8)
    index = (root / "index.csv").read_bytes()
    note = tmp_path / "notes.txt"
    note.write_text("keep me")
    for out, words in ((note, "not a figure written by opticsfree"),
                       (root / "index.csv", "inside the capture set"),
                       (root / "figure.png", "inside the capture set")):
        r = invoke(["show", root, "--out", out])
        assert r.exit_code == 2 and words in r.stderr and "Traceback" not in r.output, r.output
    assert note.read_text() == "keep me" and (root / "index.csv").read_bytes() == index
    assert not (root / "figure.png").exists()
    fig = tmp_path / "grid.png"
    assert invoke(["show", root, "--out", fig]).exit_code == 0
    assert invoke(["show", root, "--out", fig, "--n", 2]).exit_code == 0  # its own figure: replaced
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "photo.png")
    r = invoke(["show", root, "--out", tmp_path / "photo.png"])
    assert r.exit_code == 2 and "not a figure written by opticsfree" in r.stderr


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    """(Checked through os.access: the tests may run as root, whom permission bits do not stop.)"""
    import opticsfree.utils.io as io_mod

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(io_mod.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    root = make_capture_set(tmp_path / "set", n_classes=2, per_class=4, size=8)
    for args in (["reconstruct", "train", root, "--method", "tikhonov", "--out", locked / "model"],
                 ["camera", "fit", "seed", "--target", "raw_psnr=11", "--free", "geometry.gap_mm=0.5:2",
                  "--dataset", "digits", "--out", locked / "cam.toml"],
                 ["calibrate", root, "--out", locked / "camera.npz"]):
        r = invoke(args)
        assert r.exit_code == 2 and "is not writable" in r.stderr and "Traceback" not in r.output, r.output
        assert list(locked.iterdir()) == []
