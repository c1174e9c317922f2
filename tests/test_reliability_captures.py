"""Reliability of capture sets: loader cache keys, class folder names, one-line errors, worker
processes, alpha and unreadable images in ImageFolder trees, warnings of simulate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from opticsfree.captures import load_captures, open_capture_set
from opticsfree.captures.check import check_capture_set
from opticsfree.captures.format import read_index, write_index
from opticsfree.captures.importer import import_captures
from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.captures.testing import make_capture_set
from opticsfree.captures.writer import read_image
from opticsfree.cli.main import app
from opticsfree.data import load_dataset
from opticsfree.data.base import ImageDataset, Split
from opticsfree.errors import OpticsfreeError
from opticsfree.optics import load_camera_config
from opticsfree.optics.config import preset_path

runner = CliRunner()


def _one_line_error(res, *needles: str) -> str:
    """Assert the CLI failed with exactly one line ``error: ...`` (no traceback); return it."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _fast_camera_toml(tmp_path: Path, **sensor_lines: str) -> Path:
    """The seed preset with coarse integration (fast), optionally with sensor lines replaced."""
    text = (preset_path("seed").read_text().replace("supersample = 3", "supersample = 1")
            .replace("supersample = 2", "supersample = 1"))
    for key, value in sensor_lines.items():
        lines = text.splitlines()
        lines = [f"{key} = {value}" if ln.split("=")[0].strip() == key else ln for ln in lines]
        text = "\n".join(lines) + "\n"
    p = tmp_path / f"cam{len(list(tmp_path.glob('cam*.toml')))}.toml"
    p.write_text(text)
    return p


def _small_camera():
    return load_camera_config("seed").replace(display={"supersample": 1}, sensor={"supersample": 1})


def _tiny_dataset(classes: list[str], per_class: int = 3, size: int = 8) -> ImageDataset:
    rng = np.random.default_rng(0)
    splits = {}
    for split in ("train", "test"):
        labels = np.repeat(np.arange(len(classes)), per_class).astype(np.int64)
        images = rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8)
        ids = [f"{split}_{i:03d}" for i in range(len(labels))]
        splits[split] = Split(images, labels, ids)
    return ImageDataset("tiny", "in memory (tests)", list(classes), splits)


# --------------------------------------------------------------------------- 1. loader cache

def test_loader_cache_rebuilds_when_a_capture_changes(tmp_path):
    root = make_capture_set(tmp_path / "set", n_classes=2, per_class=3, size=8)
    first = load_captures(root, "test")
    assert first.lensless.float().mean() > 20
    rows = open_capture_set(root).rows_for("test")
    victim = root / rows[0].lensless
    st = os.stat(victim)
    Image.new("RGB", (8, 8)).save(victim, format="JPEG")  # a black capture, same size
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    again = load_captures(root, "test")
    assert int(again.lensless[0].max()) <= 2  # the new (black) pixels, not the cached ones
    assert again.lensless[1:].equal(first.lensless[1:])
    # Even a replacement that keeps size and modification time is noticed (change time, inode).
    victim2 = root / rows[1].lensless
    st2 = os.stat(victim2)
    data = victim2.read_bytes()
    tmp = victim2.with_name("replacement.tmp")
    Image.new("RGB", (8, 8), (255, 255, 255)).save(tmp, format="JPEG")
    new = tmp.read_bytes()
    tmp.unlink()
    if len(new) == len(data):  # only meaningful when the sizes agree
        tmp.write_bytes(new)
        os.utime(tmp, ns=(st2.st_atime_ns, st2.st_mtime_ns))
        os.replace(tmp, victim2)
        assert int(load_captures(root, "test").lensless[1].min()) >= 250
    # one cache file per split and size: the stale one is removed
    assert len([p for p in (root / ".cache").iterdir() if p.name.startswith("test-")]) == 1


def test_quality_sees_replaced_captures(tmp_path):
    root = make_capture_set(tmp_path / "set", n_classes=2, per_class=3, size=16)
    res = runner.invoke(app, ["quality", str(root), "--size", "16", "--json"])
    assert res.exit_code == 0, res.output
    before = json.loads(res.stdout)["mse"]
    for r in open_capture_set(root).rows_for("test"):
        p = root / r.lensless
        st = os.stat(p)
        Image.new("RGB", (16, 16)).save(p, format="JPEG")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    res = runner.invoke(app, ["quality", str(root), "--size", "16", "--json"])
    assert json.loads(res.stdout)["mse"] != pytest.approx(before)


# --------------------------------------------------------------------------- 2. class folders

def test_class_folder_rule():
    from opticsfree.captures.format import class_folder, class_folders

    assert class_folder("T-shirt/top") == "T-shirt_top"
    assert class_folder("cat") == "cat"
    for bad in ("", ".", "..", "a\\b", "x:y", "CON", "trail. ", ".hidden", "a\x00b"):
        f = class_folder(bad)
        assert f and f not in (".", "..") and not f.startswith(".")
        assert not any(c in f for c in '/\\:<>"|?*\x00') and not f.endswith((".", " "))
        assert class_folder(f) == f  # applying the rule to a folder name keeps it
    assert class_folder("CON").upper() != "CON"
    long = class_folder("é" * 300)
    assert len(long.encode()) <= 120 and class_folder(long) == long
    # collisions, also up to letter case, resolved deterministically; verbatim names keep theirs
    assert class_folders(["T-shirt/top", "T-shirt_top"]) == ["T-shirt_top_2", "T-shirt_top"]
    f = class_folders(["Cat", "cat", "a/b", "a:b"])
    assert len({x.casefold() for x in f}) == 4 and f[0] == "Cat"
    assert f == class_folders(["Cat", "cat", "a/b", "a:b"])


def test_slash_in_class_name_survives_simulate_check_and_import(tmp_path):
    ds = _tiny_dataset(["T-shirt/top", "a"])
    sim = simulate_capture_set(ds, load_camera_config("lens"), tmp_path / "sim", seed=0, workers=1)
    cs = open_capture_set(sim)
    assert cs.classes == ["T-shirt/top", "a"]
    for r in cs.rows:
        assert r.label_name == cs.classes[r.label]
        for rel in (r.original, r.lensless):
            assert len(Path(rel).parts) == 4, rel  # <kind>/<split>/<folder>/<file>: no nesting
    assert check_capture_set(sim).ok, check_capture_set(sim).problems
    assert runner.invoke(app, ["check", str(sim)]).exit_code == 0

    rep = import_captures(sim / "lensless", sim / "originals", tmp_path / "imp")
    assert rep.classes == ["T-shirt/top", "a"]
    imp = open_capture_set(tmp_path / "imp")
    assert imp.classes == ["T-shirt/top", "a"]
    want = {r.id: r.label_name for r in cs.rows}
    got = {r.id: r.label_name for r in imp.rows}
    assert got == want and all(imp.classes[r.label] == r.label_name for r in imp.rows)
    assert check_capture_set(tmp_path / "imp").ok
    res = runner.invoke(app, ["import", "--lensless", str(sim / "lensless"), "--originals",
                              str(sim / "originals"), "--out", str(tmp_path / "imp2")])
    assert res.exit_code == 0, res.output
    assert open_capture_set(tmp_path / "imp2").classes == ["T-shirt/top", "a"]


def test_check_flags_nested_class_folders(tmp_path):
    ds = _tiny_dataset(["T-shirt/top", "a"])
    sim = simulate_capture_set(ds, load_camera_config("lens"), tmp_path / "sim", seed=0, workers=1)
    rows = read_index(sim)
    # What older versions wrote: the name as path, i.e. nested folders T-shirt/top/.
    moved = []
    for r in rows:
        if r.label_name != "T-shirt/top":
            moved.append(r)
            continue
        new = {}
        for kind in ("original", "lensless"):
            rel = getattr(r, kind)
            nested = rel.replace("T-shirt_top", "T-shirt/top")
            (sim / nested).parent.mkdir(parents=True, exist_ok=True)
            if (sim / rel).exists():
                os.replace(sim / rel, sim / nested)
            new[kind] = nested
        moved.append(type(r)(r.split, r.id, r.label, r.label_name, new["original"], new["lensless"], r.frame))
    write_index(sim, moved, frames=False)
    rep = check_capture_set(sim)
    assert not rep.ok
    assert all("folder" in p["problem"] and "T-shirt_top" in p["problem"] for p in rep.problems)
    # import of such a set still gets the real class names and order
    imp = import_captures(sim / "lensless", sim / "originals", tmp_path / "imp")
    assert imp.classes == ["T-shirt/top", "a"] and check_capture_set(tmp_path / "imp").ok


def test_labels_csv_class_names_with_slash(tmp_path):
    orig, lens = tmp_path / "originals", tmp_path / "lensless"
    orig.mkdir()
    lens.mkdir()
    rng = np.random.default_rng(1)
    lines = ["id,label_name"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(orig / f"s{i}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(lens / f"s{i}.jpeg")
        lines.append(f"s{i},{'T-shirt/top' if i % 2 else 'Bag'}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    rep = import_captures(lens, orig, tmp_path / "set", labels_csv=tmp_path / "labels.csv")
    assert set(rep.classes) == {"T-shirt/top", "Bag"}
    assert {r.label_name for r in open_capture_set(tmp_path / "set").rows} == {"T-shirt/top", "Bag"}
    assert check_capture_set(tmp_path / "set").ok


# --------------------------------------------------------------------------- 3. one-line errors

def test_import_labels_csv_not_utf8_is_one_line(tmp_path):
    orig, lens = tmp_path / "originals" / "cat", tmp_path / "lensless"
    orig.mkdir(parents=True)
    lens.mkdir()
    Image.new("RGB", (8, 8)).save(orig / "a.png")
    Image.new("RGB", (8, 8)).save(lens / "a.jpeg")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes("id,label_name\na,caf\xe9\n".encode("latin-1"))
    res = runner.invoke(app, ["import", "--lensless", str(lens), "--originals", str(orig.parent),
                              "--labels", str(csv_path), "--out", str(tmp_path / "set")])
    _one_line_error(res, "labels.csv", "UTF-8")
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("size", ["[0, 0]", "[-4, 32]", "[32, 0]"])
def test_camera_output_size_must_be_positive(tmp_path, size):
    cam = _fast_camera_toml(tmp_path, output_size=size)
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam), "--split", "test",
                              "--limit", "10", "--out", str(out)])
    _one_line_error(res, str(cam), "sensor.output_size", ">= 1")
    assert not out.exists()


def test_simulate_validates_before_writing_then_corrected_rerun_works(tmp_path):
    good = _fast_camera_toml(tmp_path)
    bad = tmp_path / "psf.toml"
    text = good.read_text().replace('type = "bare"', 'type = "psf"')
    bad.write_text(text + '\n[psf]\npath = "missing.npy"\npixel_mm = 0.05\n')
    out = tmp_path / "out"
    out.mkdir()  # an existing, empty directory
    args = ["simulate", "--dataset", "digits", "--split", "test", "--limit", "10", "--out", str(out)]
    res = runner.invoke(app, args + ["--camera", str(bad)])
    _one_line_error(res, "missing.npy")
    assert list(out.iterdir()) == []  # no simulation.json left behind
    res = runner.invoke(app, args + ["--camera", str(bad), "--frames", "0"])
    _one_line_error(res, "--frames")
    assert list(out.iterdir()) == []
    res = runner.invoke(app, args + ["--camera", str(good), "--workers", "-1"])
    _one_line_error(res, "--workers")
    assert list(out.iterdir()) == []
    np.save(tmp_path / "missing.npy", np.ones((5, 5)))  # the PSF now exists: corrected rerun
    res = runner.invoke(app, args + ["--camera", str(bad)])
    assert res.exit_code == 0, res.output
    assert check_capture_set(out).ok


def test_out_that_is_a_file_is_one_line(tmp_path):
    cam = _fast_camera_toml(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for out in (afile, afile / "sub"):
        res = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam), "--split", "test",
                                  "--limit", "10", "--out", str(out)])
        _one_line_error(res, str(afile))
    assert afile.read_text() == "not a directory"
    root = make_capture_set(tmp_path / "src", n_classes=2, per_class=2)
    for out in (afile, afile / "sub"):
        res = runner.invoke(app, ["import", "--lensless", str(root / "lensless"), "--originals",
                                  str(root / "originals"), "--out", str(out)])
        _one_line_error(res, str(afile))
    assert afile.read_text() == "not a directory"


def test_import_into_read_only_parent_is_one_line(tmp_path):
    root = make_capture_set(tmp_path / "src", n_classes=2, per_class=2)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running with privileges that bypass file permissions")
        res = runner.invoke(app, ["import", "--lensless", str(root / "lensless"), "--originals",
                                  str(root / "originals"), "--out", str(ro / "set")])
        _one_line_error(res, str(ro))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_import_permission_error_is_one_line_even_as_root(tmp_path, monkeypatch):
    """The same failure injected (root bypasses permissions, so the test above may skip)."""
    import pathlib

    root = make_capture_set(tmp_path / "src", n_classes=2, per_class=2)
    real_mkdir = pathlib.Path.mkdir

    def denied(self, *args, **kwargs):
        if self.name.endswith(".tmp-import"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", denied)
    res = runner.invoke(app, ["import", "--lensless", str(root / "lensless"), "--originals",
                              str(root / "originals"), "--out", str(tmp_path / "dest" / "set")])
    _one_line_error(res, "Permission denied", str(tmp_path / "dest"))


# --------------------------------------------------------------------------- 4. worker processes

def _sigint_self() -> tuple[bool, int]:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, os.getpid()


def test_pool_workers_ignore_sigint():
    from opticsfree.utils.parallel import process_pool

    with process_pool(2) as pool:
        ignored, pid = pool.submit(_sigint_self).result(timeout=60)
    assert ignored and pid != os.getpid()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("mode", ["prctl", "watchdog"])
def test_workers_exit_when_the_parent_is_killed(tmp_path, mode):
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import os, sys, time
        from opticsfree.utils.parallel import process_pool
        if {mode!r} == "watchdog":
            sys.platform = "darwin"  # force the fallback (inherited by the forked workers)

        def work(path):
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
            time.sleep(120)

        if __name__ == "__main__":
            with process_pool(1) as pool:
                pool.submit(work, {str(pid_file)!r})
                time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "the worker did not start"
        worker = int(pid_file.read_text())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 15
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_worker_init_is_importable_initializer():
    from opticsfree.utils.parallel import worker_init

    # every pool of the package uses it; calling it in a throwaway process must be harmless
    code = ("import signal; from opticsfree.utils.parallel import worker_init; worker_init(); "
            "print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert callable(worker_init)


# --------------------------------------------------------------------------- 5. ImageFolder trees

def _rgba_with_hidden_red(path: Path, mode: str = "RGBA") -> None:
    """Left half opaque blue, right half fully transparent red (the hidden colour)."""
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4] = (0, 0, 255, 255)
    arr[:, 4:] = (255, 0, 0, 0)
    img = Image.fromarray(arr)
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("RGB").quantize(colors=4)
        red = next(i for i, c in enumerate(np.asarray(img.getpalette()).reshape(-1, 3)) if tuple(c) == (255, 0, 0))
        img.info["transparency"] = red
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, transparency=img.info["transparency"]) if mode == "P" else img.save(path)


def test_imagefolder_composites_alpha_onto_white(tmp_path):
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("x", "y"):
            for i in range(2):
                _rgba_with_hidden_red(tree / split / cls / f"{cls}{i}.png")
    ds = load_dataset("folder", data=tree)
    img = ds.splits["train"].images[0]
    assert img.shape == (8, 8, 3)
    assert (img[:, :4] == (0, 0, 255)).all()
    assert (img[:, 4:] == 255).all()  # white background, not the hidden red
    # the capture-set reader composites the same way
    np.testing.assert_array_equal(read_image(tree / "train" / "x" / "x0.png"), img)


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_imagefolder_alpha_modes(tmp_path, mode):
    from opticsfree.data.imagefolder import decode_images

    p = tmp_path / f"im_{mode}.png"
    _rgba_with_hidden_red(p, mode)
    assert Image.open(p).mode == mode
    arr, _ = decode_images([(str(p), str(p))], rgb=True)
    assert (arr[0][:, 4:] == 255).all(), arr[0][:, 4:]


def _folder_tree(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(3):
                p = root / split / cls / f"{cls}{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(p)
    empty = root / "train" / "a" / "a1.png"
    empty.write_bytes(b"")
    truncated = root / "test" / "b" / "b2.png"
    truncated.write_bytes(truncated.read_bytes()[:30])
    return empty, truncated


def test_simulate_skip_bad_lists_skipped_files(tmp_path):
    tree = tmp_path / "tree"
    empty, truncated = _folder_tree(tree)
    cam = _fast_camera_toml(tmp_path)
    out = tmp_path / "set"
    res = runner.invoke(app, ["simulate", "--dataset", "folder", "--data", str(tree), "--camera", str(cam),
                              "--out", str(out), "--workers", "1"])
    _one_line_error(res, str(empty), "--skip-bad")
    assert not out.exists()
    res = runner.invoke(app, ["simulate", "--dataset", "folder", "--data", str(tree), "--camera", str(cam),
                              "--out", str(out), "--workers", "1", "--skip-bad"])
    assert res.exit_code == 0, res.output
    m = open_capture_set(out).manifest
    assert sorted(s["path"] for s in m["skipped"]) == sorted([str(empty), str(truncated)])
    assert all(s["reason"] for s in m["skipped"])
    assert m["splits"] == {"train": 5, "test": 5}
    ids = {(r.split, r.id) for r in open_capture_set(out).rows}
    assert ("train", "a_a1") not in ids and ("test", "b_b2") not in ids
    assert ("test", "a_a1") in ids and ("train", "b_b2") in ids
    assert check_capture_set(out).ok
    assert str(empty) in res.output  # also named on screen
    # rerunning the same command resumes (same plan)
    res = runner.invoke(app, ["simulate", "--dataset", "folder", "--data", str(tree), "--camera", str(cam),
                              "--out", str(out), "--workers", "1", "--skip-bad"])
    assert res.exit_code == 0, res.output
    # --skip-bad is for ImageFolder trees
    res = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam),
                              "--out", str(tmp_path / "d"), "--skip-bad"])
    _one_line_error(res, "--skip-bad")


def test_skip_bad_without_bad_files_records_an_empty_list(tmp_path):
    from opticsfree.captures.simulate import load_simulation_dataset

    tree = tmp_path / "tree"
    empty, truncated = _folder_tree(tree)
    Image.new("L", (8, 8)).save(empty, format="PNG")
    Image.new("L", (8, 8)).save(truncated, format="PNG")
    ds, skipped = load_simulation_dataset("folder", tree, ("train", "test"), skip_bad=True)
    assert skipped == [] and len(ds.splits["train"]) == 6
    root = simulate_capture_set(ds, _small_camera(), tmp_path / "set", workers=1, skipped=skipped)
    assert open_capture_set(root).manifest["skipped"] == []


# --------------------------------------------------------------------------- 6. warnings

def test_simulate_warns_about_classes_without_test_images(tmp_path):
    cam = _fast_camera_toml(tmp_path)
    res = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam), "--split", "test",
                              "--limit", "5", "--out", str(tmp_path / "set")])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1, res.stderr
    assert "'test'" in warnings[0]
    for c in "56789":
        assert f"'{c}'" in warnings[0]
    assert "'0'" not in warnings[0]
    # the library reports it through on_warning (or logs it)
    got: list[str] = []
    simulate_capture_set(load_dataset("digits", splits=("test",)), _small_camera(), tmp_path / "lib",
                         splits=["test"], limit=5, workers=1, on_warning=got.append)
    assert len(got) == 1 and "'9'" in got[0]
    got.clear()
    simulate_capture_set(load_dataset("digits", splits=("test",)), _small_camera(), tmp_path / "lib2",
                         splits=["test"], limit=20, workers=1, on_warning=got.append)
    assert got == []


def test_simulate_library_errors_leave_nothing(tmp_path):
    ds = load_dataset("digits", splits=("test",))
    out = tmp_path / "x"
    for kwargs in ({"batch": 0}, {"workers": -2}, {"frames": 0}, {"limit": 0}):
        with pytest.raises(OpticsfreeError):
            simulate_capture_set(ds, _small_camera(), out, splits=["test"], **kwargs)
        assert not out.exists()
