"""Tests for opticsfree.data: every source, the lookup order, the decode cache and the errors."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from opticsfree.data import CIFAR10_CLASSES, DATASETS, load_dataset
from opticsfree.data import cache as cache_mod
from opticsfree.data import cifar10 as cifar_mod
from opticsfree.data import download as download_mod
from opticsfree.data import imagefolder
from opticsfree.data.digits import bilinear_matrix
from opticsfree.data.ids import unique_ids
from opticsfree.data.split import stratified_split
from opticsfree.errors import ConfigError, DataError

REAL_DOWNLOAD = download_mod.download_file
SHARED_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private user cache, no $OPTICSFREE_DATA, and no network for every test."""
    monkeypatch.setenv("OPTICSFREE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPTICSFREE_DATA", raising=False)

    def offline(url, dest, md5=None):
        raise DataError(f"cannot download {url}: offline (test)")

    monkeypatch.setattr(download_mod, "download_file", offline)


# --- builders -----------------------------------------------------------------------------

def _tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _class_image(label: int, k: int, size: int = 4, channels: int = 3) -> np.ndarray:
    """An image whose pixels encode its label and index (so label order can be checked)."""
    arr = np.full((size, size, channels), 20 * label + k, dtype=np.uint8)
    return arr[..., 0] if channels == 1 else arr


def _folder_files(classes, splits=("train", "test"), per_class=2, prefix="", size=4, fmt="PNG",
                  ext=".png", channels=3) -> dict[str, bytes]:
    files = {}
    for s in splits:
        for label, c in enumerate(classes):
            for k in range(per_class):
                rel = f"{s}/{c}/{k:04d}{ext}" if s else f"{c}/{k:04d}{ext}"
                files[prefix + rel] = _png(_class_image(label, k, size, channels), fmt)
    return files


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _official_files(per_batch: int = 2, seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """Official-format CIFAR-10 batches (dict keys as the real Python 2 pickles: bytes)."""
    rng = np.random.default_rng(seed)
    files, truth = {}, {}
    for name in cifar_mod.TRAIN_BATCHES + (cifar_mod.TEST_BATCH,):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=per_batch)]
        fnames = [f"{CIFAR10_CLASSES[lab]}_s_{name}_{i:06d}.png".encode() for i, lab in enumerate(labels)]
        batch = {b"batch_label": name.encode(), b"data": data, b"labels": labels, b"filenames": fnames}
        files[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
        truth[name] = (data, labels, fnames)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072,
            b"num_cases_per_batch": per_batch}
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=2)
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return files, truth


def _check_official(ds, truth) -> None:
    assert ds.name == "cifar10" and ds.classes == list(CIFAR10_CLASSES)
    train, test = ds.splits["train"], ds.splits["test"]
    data = np.concatenate([truth[b][0] for b in cifar_mod.TRAIN_BATCHES])
    assert train.images.shape == (10, 32, 32, 3) and train.images.dtype == np.uint8
    # channel-major rows (1024 R, 1024 G, 1024 B) -> NHWC
    assert np.array_equal(train.images, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train.labels.dtype == np.int64
    assert train.labels.tolist() == [x for b in cifar_mod.TRAIN_BATCHES for x in truth[b][1]]
    assert test.ids == [f.decode()[:-4] for f in truth["test_batch"][2]]
    assert train.ids[0].startswith(CIFAR10_CLASSES[train.labels[0]] + "_s_")


# --- digits -------------------------------------------------------------------------------

def test_digits_shapes_labels_ids():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.classes == [str(i) for i in range(10)]
    tr, te = ds.splits["train"], ds.splits["test"]
    assert tr.images.shape[1:] == (32, 32, 1) and tr.images.dtype == np.uint8
    assert len(tr) + len(te) == 1797 and abs(len(te) / 1797 - 0.2) < 0.01
    assert tr.labels.dtype == np.int64 and set(tr.labels.tolist()) == set(range(10))
    assert len(set(tr.ids)) == len(tr) and len(set(te.ids)) == len(te)
    assert not set(tr.ids) & set(te.ids)
    assert tr.images.max() == 255 and tr.images.min() == 0
    # stratified: every class holds ~20% of its rows in test
    counts = np.bincount(te.labels, minlength=10) / np.bincount(np.concatenate([tr.labels, te.labels]))
    assert np.all(np.abs(counts - 0.2) < 0.02)
    # fixed split and fresh arrays on every call
    again = load_dataset("digits", splits=("test",))
    assert list(again.splits) == ["test"] and again.splits["test"].ids == te.ids
    again.splits["test"].images[:] = 0
    assert load_dataset("digits").splits["test"].images.max() == 255


def test_digits_pixels_follow_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits()
    ds = load_dataset("digits")
    tr = ds.splits["train"]
    row = int(tr.ids[5].split("_")[1])
    assert raw.target[row] == tr.labels[5]
    big = tr.images[5, :, :, 0].astype(float)
    small = big.reshape(8, 4, 8, 4).mean(axis=(1, 3))  # back to 8x8
    assert np.corrcoef(small.ravel(), raw.images[row].ravel())[0, 1] > 0.95
    w = bilinear_matrix(8, 32)
    assert np.allclose(w.sum(axis=1), 1.0) and np.allclose(w @ np.ones(8), 1.0)


def test_digits_rejects_data_path(tmp_path):
    with pytest.raises(ConfigError, match="digits"):
        load_dataset("digits", data=tmp_path)


def test_unknown_name_and_split():
    with pytest.raises(ConfigError) as e:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="splits"):
        load_dataset("digits", splits=("val",))


# --- CIFAR-10, official format ------------------------------------------------------------

def test_cifar_official_tar_and_extracted_dir(tmp_path):
    files, truth = _official_files()
    tar = _tar_gz(tmp_path / "cifar-10-python.tar.gz", files)
    ds = load_dataset("cifar10", data=tar)
    _check_official(ds, truth)
    assert str(tar) in ds.source and "official" in ds.source and ds.notes == []

    extracted = _write_tree(tmp_path / "x", files)
    for data in (extracted / "cifar-10-batches-py", extracted):  # the dir, or a dir holding it
        ds = load_dataset("cifar10", data=data)
        _check_official(ds, truth)
        assert str(extracted / "cifar-10-batches-py") in ds.source


def test_cifar_official_test_split_only(tmp_path):
    files, truth = _official_files()
    del files["cifar-10-batches-py/data_batch_3"]
    tar = _tar_gz(tmp_path / "c.tar.gz", files)
    ds = load_dataset("cifar10", data=tar, splits=("test",))
    assert list(ds.splits) == ["test"] and len(ds.splits["test"]) == 2
    with pytest.raises(DataError, match="data_batch_3") as e:
        load_dataset("cifar10", data=tar, splits=("train",))
    assert str(tar) in str(e.value)


def test_cifar_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    files, _ = _official_files()
    files["cifar-10-batches-py/test_batch"] = pickle.dumps({b"data": Evil()}, protocol=2)
    tar = _tar_gz(tmp_path / "c.tar.gz", files)
    with pytest.raises(DataError, match="test_batch.*not allowed"):
        load_dataset("cifar10", data=tar, splits=("test",))


# --- CIFAR-10 and folder, ImageFolder form ------------------------------------------------

def test_cifar_imagefolder_dir_and_tar_keep_cifar_order(tmp_path):
    files = _folder_files(CIFAR10_CLASSES, ext=".jpg", fmt="JPEG", size=8)
    tree = _write_tree(tmp_path / "tree", files)
    # an archive with a wrapper directory, members in reverse order
    tar = _tar_gz(tmp_path / "cifar10-mine.tar.gz",
                  {f"wrap/{k}": v for k, v in reversed(list(files.items()))})
    results = [load_dataset("cifar10", data=tree), load_dataset("cifar10", data=tar)]
    for ds in results:
        assert ds.classes == list(CIFAR10_CLASSES)
        for s in ("train", "test"):
            sp = ds.splits[s]
            assert sp.images.shape == (20, 8, 8, 3)
            # pixel value 20*label + k survives JPEG within a few levels
            assert np.all(np.abs(sp.images.mean(axis=(1, 2, 3)) - (20 * sp.labels + np.tile([0, 1], 10))) < 3)
            assert sp.ids[:2] == ["airplane_0000", "airplane_0001"] and len(set(sp.ids)) == 20
        assert any("JPEG re-encoded" in n and "not bit-identical" in n.lower() for n in ds.notes)
    assert np.array_equal(results[0].splits["test"].images, results[1].splits["test"].images)


def test_folder_two_split_sorted_classes_and_png_exact(tmp_path):
    files = _folder_files(["zebra", "ant", "moth"], size=5)
    tar = _tar_gz(tmp_path / "t.tar.gz", files)
    ds = load_dataset("folder", data=tar)
    assert ds.classes == ["ant", "moth", "zebra"]
    tr = ds.splits["train"]
    assert tr.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert tr.ids == ["ant_0000", "ant_0001", "moth_0000", "moth_0001", "zebra_0000", "zebra_0001"]
    # zebra was written with label 0 -> pixel 0 / 1
    assert tr.images[4].max() == 0 and tr.images[5].max() == 1 and tr.images.shape[-1] == 3


def test_folder_single_split_grayscale(tmp_path):
    files = _folder_files(["a", "b"], splits=("",), per_class=10, channels=1)
    root = _write_tree(tmp_path / "flat", files)
    (root / "README.txt").write_text("not an image")
    ds = load_dataset("folder", data=root)
    tr, te = ds.splits["train"], ds.splits["test"]
    assert tr.images.shape == (16, 4, 4, 1) and te.images.shape == (4, 4, 4, 1)
    assert np.bincount(te.labels).tolist() == [2, 2]
    assert not set(tr.ids) & set(te.ids)
    assert any("80%/20%" in n for n in ds.notes)
    assert load_dataset("folder", data=root, splits=("test",)).splits["test"].ids == te.ids


def test_folder_empty_class_folders_are_named_in_one_warning(tmp_path, caplog):
    """An empty class folder is no longer dropped silently: one warning line names it and says
    that its class is left out of the class list (or kept, with images in another split)."""
    files = _folder_files(["a", "b"], splits=("",), per_class=5)
    root = _write_tree(tmp_path / "flat", files)
    (root / "c").mkdir()
    (root / "d").mkdir()
    (root / "d" / "README.txt").write_text("not an image")
    seen = []
    tree = imagefolder.scan_directory(root, allow_single=True, on_warning=seen.append)
    assert tree.classes == ["a", "b"] and tree.empty_folders == ["c", "d"]
    assert tree.dropped_classes == ["c", "d"]
    assert seen == [f"{root}: 2 class folder(s) without images: c, d; class(es) 'c', 'd' left "
                    "out of the class list (labels number the classes that have images)"]
    # load_dataset: the module's logger, one line "warning: ..."; labels index a, b
    with caplog.at_level("WARNING", logger="opticsfree.data.imagefolder"):
        ds = load_dataset("folder", data=root)
    lines = [r.getMessage() for r in caplog.records if "without images" in r.getMessage()]
    assert lines == ["warning: " + seen[0]] and "\n" not in lines[0]
    assert ds.classes == ["a", "b"] and set(ds.splits["train"].labels.tolist()) == {0, 1}

    # two splits below a wrapper: test/b empty but b has train images (kept), train/c and
    # test/c empty (dropped)
    files = _folder_files(["a", "b"], splits=("train", "test"), prefix="wrap/")
    files = {k: v for k, v in files.items() if not k.startswith("wrap/test/b/")}
    root = _write_tree(tmp_path / "two", files)
    for d in ("test/b", "train/c", "test/c", "val/z"):   # val/: not a split folder
        (root / "wrap" / d).mkdir(parents=True)
    seen = []
    tree = imagefolder.scan_directory(root, allow_single=True, on_warning=seen.append)
    assert tree.two_split and tree.classes == ["a", "b"]
    assert tree.empty_folders == ["wrap/test/b", "wrap/test/c", "wrap/train/c"]
    assert len(seen) == 1 and "'c' left out of the class list" in seen[0]
    assert "class(es) 'b' kept (images in another split)" in seen[0]
    # no empty folder: no warning
    seen = []
    full = _write_tree(tmp_path / "full", _folder_files(["a", "b"], splits=("",)))
    assert imagefolder.scan_directory(full, True, on_warning=seen.append).empty_folders == []
    assert seen == []


def test_folder_needs_data_and_checks_sizes(tmp_path):
    with pytest.raises(ConfigError, match="--data"):
        load_dataset("folder")
    files = _folder_files(["a", "b"], per_class=2)
    files["train/b/0001.png"] = _png(np.zeros((5, 4, 3), np.uint8))
    files["test/b/0001.png"] = _png(np.zeros((6, 4, 3), np.uint8))
    root = _write_tree(tmp_path / "t", files)
    with pytest.raises(DataError, match="0001.png: image size 4x5 differs") as e:
        load_dataset("folder", data=root)
    assert str(root / "train" / "b" / "0001.png") in str(e.value)


def test_corrupt_image_names_member(tmp_path):
    files = _folder_files(CIFAR10_CLASSES, per_class=1)
    files["test/cat/0000.png"] = b"\x89PNG\r\n\x1a\n garbage"
    tar = _tar_gz(tmp_path / "bad.tar.gz", files)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data=tar, splits=("test",))
    assert f"{tar}:test/cat/0000.png" in str(e.value)
    root = _write_tree(tmp_path / "bad", files)
    with pytest.raises(DataError, match="cannot decode") as e:
        load_dataset("folder", data=root)
    assert str(root / "test" / "cat" / "0000.png") in str(e.value)


def test_unknown_layouts(tmp_path):
    odd = tmp_path / "odd"
    (odd / "stuff").mkdir(parents=True)
    (odd / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="expected .*cifar-10-python.tar.gz") as e:
        load_dataset("cifar10", data=odd)
    assert str(odd) in str(e.value)
    tar = _tar_gz(tmp_path / "odd.tar.gz", {"a/b.txt": b"x", "c.png": _png(np.zeros((2, 2), np.uint8))})
    with pytest.raises(DataError, match="unknown archive layout") as e:
        load_dataset("cifar10", data=tar)
    assert str(tar) in str(e.value)
    with pytest.raises(DataError, match="no images in an ImageFolder layout") as e:
        load_dataset("folder", data=tar)
    notatar = tmp_path / "cifar.bin"
    notatar.write_bytes(b"hello")
    with pytest.raises(DataError, match="not a readable tar archive") as e:
        load_dataset("cifar10", data=notatar)
    assert str(notatar) in str(e.value)
    with pytest.raises(DataError, match="no such file"):
        load_dataset("cifar10", data=tmp_path / "missing")


# --- lookup order -------------------------------------------------------------------------

def test_env_data_dir_lookup_order(tmp_path, monkeypatch):
    env = tmp_path / "env"
    env.mkdir()
    _write_tree(env / "cifar100", _folder_files(["apple", "bee"]))  # CIFAR-100 is not CIFAR-10
    _tar_gz(env / "cifar10-small.tar.gz", _folder_files(CIFAR10_CLASSES, per_class=1))
    monkeypatch.setenv("OPTICSFREE_DATA", str(env))
    ds = load_dataset("cifar10")
    assert ds.source.startswith(str(env / "cifar10-small.tar.gz")) and len(ds.splits["train"]) == 10
    # the official archive name wins over other copies in the same directory
    files, truth = _official_files()
    _tar_gz(env / "cifar-10-python.tar.gz", files)
    _check_official(load_dataset("cifar10"), truth)
    # nothing in $OPTICSFREE_DATA: the user cache's datasets/ directory is next
    monkeypatch.setenv("OPTICSFREE_DATA", str(tmp_path / "empty"))
    cached = Path(os.environ["OPTICSFREE_CACHE"]) / "datasets"
    cached.mkdir(parents=True, exist_ok=True)
    _tar_gz(cached / "cifar-10-python.tar.gz", files)
    assert load_dataset("cifar10").source.startswith(str(cached))


def test_missing_offline_data_says_how_to_point_at_a_copy(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("OPTICSFREE_DATA", str(empty))
    for name in ("cifar10", "fashion-mnist"):
        with pytest.raises(DataError) as e:
            load_dataset(name)
        msg = str(e.value)
        assert str(empty) in msg and "--data PATH" in msg and "OPTICSFREE_DATA" in msg and "offline" in msg


def test_download_lands_in_cache_and_is_reused(tmp_path, monkeypatch):
    files, truth = _official_files()
    payload = _tar_gz(tmp_path / "src.tar.gz", files).read_bytes()
    calls = []

    def fake_download(url, dest, md5=None):
        calls.append((url, md5))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(payload)
        return Path(dest)

    monkeypatch.setattr(download_mod, "download_file", fake_download)
    _check_official(load_dataset("cifar10"), truth)
    _check_official(load_dataset("cifar10"), truth)
    assert calls == [(cifar_mod.URL, cifar_mod.MD5)]


def test_download_file_verifies_md5(tmp_path):
    import hashlib

    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DataError, match="corrupt: md5"):
        REAL_DOWNLOAD(src.as_uri(), dest, md5="0" * 32)
    assert not dest.exists() and not list(dest.parent.glob("*.tmp"))
    REAL_DOWNLOAD(src.as_uri(), dest, md5=hashlib.md5(b"abc" * 1000).hexdigest())
    assert dest.read_bytes() == b"abc" * 1000
    with pytest.raises(DataError, match="cannot download"):
        REAL_DOWNLOAD((tmp_path / "nope.bin").as_uri(), tmp_path / "x.bin")


# --- decode cache -------------------------------------------------------------------------

def test_decode_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = _write_tree(tmp_path / "t", _folder_files(["a", "b"]))
    first = load_dataset("folder", data=root)
    real = imagefolder.decode_images

    def must_not_decode(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder, "decode_images", must_not_decode)
    second = load_dataset("folder", data=root)
    for s in ("train", "test"):
        assert np.array_equal(first.splits[s].images, second.splits[s].images)
        assert first.splits[s].ids == second.splits[s].ids
    assert second.classes == first.classes and second.source == first.source

    # a changed file invalidates the cache
    (root / "test" / "a" / "0000.png").write_bytes(_png(np.full((4, 4, 3), 99, np.uint8)))
    os.utime(root / "test" / "a" / "0000.png", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("folder", data=root)
    monkeypatch.setattr(imagefolder, "decode_images", real)
    assert load_dataset("folder", data=root).splits["test"].images[0].max() == 99

    # a corrupt cache file is ignored and rewritten
    cached = sorted((Path(os.environ["OPTICSFREE_CACHE"]) / "decoded").glob("folder-*-test.npz"))
    assert cached
    for f in cached:
        f.write_bytes(b"not a zip")
    assert load_dataset("folder", data=root).splits["test"].images[0].max() == 99
    # only the current key's file was rebuilt; the stale key's garbage stays unused
    assert len(cached) == 2 and sum(cache_mod._load(f) is not None for f in cached) == 1


def test_decode_cache_for_archives_keyed_by_content(tmp_path, monkeypatch):
    files, truth = _official_files()
    tar = _tar_gz(tmp_path / "cifar-10-python.tar.gz", files)
    load_dataset("cifar10", data=tar, splits=("test",))
    calls = []
    real = cifar_mod._decode

    def counting(path, splits):
        calls.append(list(splits))
        return real(path, splits)

    monkeypatch.setattr(cifar_mod, "_decode", counting)
    load_dataset("cifar10", data=tar, splits=("test",))
    assert calls == []
    _check_official(load_dataset("cifar10", data=tar), truth)  # only train is missing
    assert calls == [["train"]]
    files2, truth2 = _official_files(seed=1)
    _tar_gz(tar, files2)  # same path, new content
    _check_official(load_dataset("cifar10", data=tar), truth2)
    assert calls[-1] == ["train", "test"]


def test_parallel_decode_matches_in_process(tmp_path, monkeypatch):
    from opticsfree.utils import parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)  # worker processes even for 40 images
    items = [(f"img{i}", _png(_class_image(i % 10, i % 7, size=6))) for i in range(40)]
    seq, f1 = imagefolder.decode_images(items, rgb=True, workers=1)
    par, f2 = imagefolder.decode_images(items, rgb=True, workers=2)
    assert np.array_equal(seq, par) and f1 == f2 == {"PNG"}


def test_mixed_gray_and_colour_become_rgb(tmp_path):
    items = [("g", _png(np.full((3, 3), 7, np.uint8))), ("c", _png(np.full((3, 3, 3), 9, np.uint8)))]
    out, _ = imagefolder.decode_images(items, rgb=False, workers=1)
    assert out.shape == (2, 3, 3, 3) and out[0].max() == 7 and out[1].min() == 9
    out, _ = imagefolder.decode_images(items[:1], rgb=False, workers=1)
    assert out.shape == (1, 3, 3, 1)


# --- Fashion-MNIST ------------------------------------------------------------------------

def _idx(arr: np.ndarray) -> bytes:
    return gzip.compress(b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
                         + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fm" / "fashion-mnist"
    d.mkdir(parents=True)
    imgs = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 6), ("t10k", 3))}
    labs = {"train": np.arange(6) % 10, "t10k": np.array([9, 0, 3])}
    for s in imgs:
        (d / f"{s}-images-idx3-ubyte.gz").write_bytes(_idx(imgs[s]))
        (d / f"{s}-labels-idx1-ubyte.gz").write_bytes(_idx(labs[s]))
    ds = load_dataset("fashion-mnist", data=tmp_path / "fm")
    te = ds.splits["test"]
    assert te.images.shape == (3, 28, 28, 1) and np.array_equal(te.images[..., 0], imgs["t10k"])
    assert te.labels.tolist() == [9, 0, 3] and te.ids == ["test_00000", "test_00001", "test_00002"]
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(np.zeros((3, 2))))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not an IDX labels file"):
        load_dataset("fashion-mnist", data=d, splits=("test",))
    with pytest.raises(DataError, match="Fashion-MNIST files not found"):
        load_dataset("fashion-mnist", data=tmp_path)


# --- helpers ------------------------------------------------------------------------------

def test_unique_ids_and_stratified_split():
    assert unique_ids(["a b", "a_b", "a/b", ".x", "ok"]) == ["a_b", "a_b_2", "a_b_3", "x", "ok"]
    labels = np.repeat(np.arange(3), [10, 5, 1])
    tr, te = stratified_split(labels)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(16))
    assert np.bincount(labels[te], minlength=3).tolist() == [2, 1, 0]
    assert np.array_equal(te, stratified_split(labels)[1])


# --- the real development copy (optional) ---------------------------------------------------

def _real_jpg() -> Path | None:
    env = os.environ.get("OPTICSFREE_DATA")
    for cand in ([Path(env) / "cifar10-jpg.tar.gz"] if env else []) + [SHARED_JPG]:
        if cand.is_file():
            return cand
    return None


_REAL = _real_jpg()


@pytest.mark.slow
@pytest.mark.skipif(_REAL is None, reason="cifar10-jpg.tar.gz not available")
def test_real_cifar10_jpg_test_split():
    ds = load_dataset("cifar10", data=_REAL, splits=("test",))
    te = ds.splits["test"]
    assert te.images.shape == (10000, 32, 32, 3)
    assert np.bincount(te.labels).tolist() == [1000] * 10
    assert ds.classes == list(CIFAR10_CLASSES) and len(set(te.ids)) == 10000
    assert any("JPEG re-encoded" in n for n in ds.notes)
