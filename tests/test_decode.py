"""The package's one image decoder (opticsfree.utils.images.decode_image): its pixel-mode rule,
its errors, and that every reader of the package gives the same pixels for the same file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from opticsfree.errors import DataError
from opticsfree.utils.images import (
    ImageDecodeError,
    decode_image,
    decode_image_format,
    decoded_channels,
    image_array,
)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _rgba_hidden_red(h: int = 6) -> Image.Image:
    """Left half opaque blue, right half fully transparent red (the hidden colour); h x 8."""
    arr = np.zeros((h, 8, 4), np.uint8)
    arr[:, :4] = (0, 0, 255, 255)
    arr[:, 4:] = (255, 0, 0, 0)
    return Image.fromarray(arr)


def _palette_with_transparency(h: int = 6) -> Image.Image:
    img = _rgba_hidden_red(h).convert("RGB").quantize(colors=4)
    red = next(i for i, c in enumerate(np.asarray(img.getpalette()).reshape(-1, 3)) if tuple(c) == (255, 0, 0))
    img.info["transparency"] = red
    return img


# --------------------------------------------------------------------------- the rule, per mode

def test_rgba_composites_onto_white_not_the_hidden_colour(tmp_path):
    p = _save(_rgba_hidden_red(), tmp_path / "rgba.png")
    assert Image.open(p).mode == "RGBA"
    a = decode_image(p)
    assert a.shape == (6, 8, 3) and a.dtype == np.uint8
    assert (a[:, :4] == (0, 0, 255)).all()
    assert (a[:, 4:] == 255).all()  # white, not the red stored under alpha 0


def test_partial_alpha_is_blended_with_white():
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 3] = 128  # black at alpha 128/255
    a = image_array(Image.fromarray(arr))
    assert (a == round(255 * (1 - 128 / 255))).all()


def test_la_gives_one_channel_composited(tmp_path):
    arr = np.zeros((4, 6, 2), np.uint8)
    arr[:, :3] = (50, 255)
    arr[:, 3:] = (200, 0)  # hidden grey under alpha 0
    p = _save(Image.fromarray(arr, mode="LA"), tmp_path / "la.png")
    assert Image.open(p).mode == "LA"
    a = decode_image(p)
    assert a.shape == (4, 6, 1)
    assert (a[:, :3] == 50).all() and (a[:, 3:] == 255).all()


def test_palette_with_transparency_gives_rgb_composited(tmp_path):
    img = _palette_with_transparency()
    p = _save(img, tmp_path / "p.png", transparency=img.info["transparency"])
    assert Image.open(p).mode == "P"
    a = decode_image(p)
    assert a.shape == (6, 8, 3)
    assert (a[:, :4] == (0, 0, 255)).all() and (a[:, 4:] == 255).all()


def test_palette_without_transparency_is_rgb(tmp_path):
    img = Image.fromarray(np.full((3, 3), 7, np.uint8)).convert("P")
    p = _save(img, tmp_path / "p.png")
    assert Image.open(p).mode == "P"
    a = decode_image(p)
    assert a.shape == (3, 3, 3)
    np.testing.assert_array_equal(a, np.asarray(Image.open(p).convert("RGB")))


def test_16_bit_is_scaled_by_its_full_range(tmp_path):
    v = np.array([[0, 257 * 100, 65535, 1000]], np.uint16)
    p = _save(Image.fromarray(v), tmp_path / "i16.png")
    assert Image.open(p).mode.startswith("I;16")
    a = decode_image(p)
    assert a.shape == (1, 4, 1)
    assert a[0, :, 0].tolist() == [0, 100, 255, round(1000 * 255 / 65535)]


def test_32_bit_integer_is_clipped_to_16_bits_and_scaled(tmp_path):
    v = np.array([[-5, 257 * 40, 65535, 70000]], np.int32)
    p = _save(Image.fromarray(v), tmp_path / "i32.tiff")
    assert Image.open(p).mode == "I"
    assert decode_image(p)[0, :, 0].tolist() == [0, 40, 255, 255]


def test_float_is_clipped_to_unit_range_and_scaled(tmp_path):
    v = np.array([[-1.0, 0.0, 0.2, 1.0, 3.0]], np.float32)
    p = _save(Image.fromarray(v), tmp_path / "f.tiff")
    assert Image.open(p).mode == "F"
    assert decode_image(p)[0, :, 0].tolist() == [0, 0, 51, 255, 255]


def test_cmyk_is_converted_to_rgb(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8), mode="CMYK")
    p = _save(img, tmp_path / "cmyk.tiff")
    assert Image.open(p).mode == "CMYK"
    a = decode_image(p)
    assert a.shape == (5, 7, 3)
    np.testing.assert_array_equal(a, np.asarray(img.convert("RGB")))


def test_one_bit_is_one_channel_black_and_white(tmp_path):
    arr = np.zeros((4, 4), bool)
    arr[:, 2:] = True
    p = _save(Image.fromarray(arr), tmp_path / "b.png")
    assert Image.open(p).mode == "1"
    a = decode_image(p)
    assert a.shape == (4, 4, 1)
    assert (a[:, :2] == 0).all() and (a[:, 2:] == 255).all()


def test_l_and_rgb_are_unchanged(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    c = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_save(Image.fromarray(g), tmp_path / "g.png")), g[..., None])
    np.testing.assert_array_equal(decode_image(_save(Image.fromarray(c), tmp_path / "c.png")), c)


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB", "RGBX"])
def test_other_colour_spaces_go_through_pillows_rgb_conversion(mode):
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).convert("RGB")
    img = Image.frombytes(mode, img.size, img.convert(mode).tobytes()) if mode != "RGBX" else img.convert("RGBX")
    a = image_array(img)
    assert a.shape == (3, 4, 3)
    np.testing.assert_array_equal(a, np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "I", "I;16", "F", "P", "PA", "RGB", "RGBA",
                                  "RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "LAB"])
def test_never_four_channels_and_header_agrees(mode):
    img = Image.new(mode, (3, 2))
    a = image_array(img)
    assert a.dtype == np.uint8 and a.shape[:2] == (2, 3) and a.shape[2] in (1, 3)
    assert a.shape[2] == decoded_channels(img)


def test_sources_path_str_bytes_and_file_object(tmp_path):
    p = _save(_rgba_hidden_red(), tmp_path / "x.png")
    ref = decode_image(p)
    data = p.read_bytes()
    for src in (str(p), data, bytearray(data), io.BytesIO(data)):
        np.testing.assert_array_equal(decode_image(src), ref)
    assert decode_image_format(data)[1] == "PNG"


# --------------------------------------------------------------------------- errors

def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()[:300]


def test_truncated_jpeg_is_one_data_error_naming_the_file(tmp_path):
    p = tmp_path / "cut.jpeg"
    p.write_bytes(_truncated_jpeg())
    with pytest.raises(DataError, match="cut.jpeg: unreadable or truncated image") as e:
        decode_image(p)
    assert isinstance(e.value, ImageDecodeError) and e.value.name == str(p)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"^archive.tar:cut.jpeg: unreadable or truncated"):
        decode_image(_truncated_jpeg(), name="archive.tar:cut.jpeg")


def test_text_file_is_a_data_error(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("not an image\n")
    with pytest.raises(DataError, match="notes.png: unreadable or truncated image"):
        decode_image(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="nope.png: file not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="is a directory"):
        decode_image(tmp_path)


# --------------------------------------------------------------------------- every reader agrees

def _sample_files(root: Path) -> list[Path]:
    """One 8 x 8 file per mode of the rule (square, so the tuple reader needs no resizing)."""
    rng = np.random.default_rng(3)
    pal = _palette_with_transparency(8)
    la = np.zeros((8, 8, 2), np.uint8)
    la[:, :4] = (90, 255)
    la[:, 4:] = (10, 0)
    return [
        _save(_rgba_hidden_red(8), root / "rgba.png"),
        _save(Image.fromarray(la, mode="LA"), root / "la.png"),
        _save(pal, root / "p.png", transparency=pal.info["transparency"]),
        _save(Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)), root / "i16.png"),
        _save(Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), mode="CMYK"), root / "cmyk.tiff"),
        _save(Image.fromarray(rng.random((8, 8)) > 0.5), root / "bit.png"),
        _save(Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)), root / "l.png"),
        _save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), root / "rgb.jpeg", quality=90),
    ]


def test_every_reader_gives_decode_images_pixels(tmp_path):
    from opticsfree.captures.check import inspect_image
    from opticsfree.captures.importer import _import_one
    from opticsfree.captures.loader import read_images as load_decode
    from opticsfree.captures.writer import read_image
    from opticsfree.data.imagefolder import decode_images as folder_decode
    from opticsfree.training.sampling import TupleDataset

    for p in _sample_files(tmp_path / "in"):
        ref = decode_image(p)
        assert ref.shape[2] in (1, 3), p
        # capture sets: read_image, the loader, seed-style tuples
        np.testing.assert_array_equal(read_image(p), ref, err_msg=str(p))
        np.testing.assert_array_equal(load_decode([str(p)], workers=1)[0], ref, err_msg=str(p))
        tup = TupleDataset([], size=8, originals=0)._read(str(p))
        np.testing.assert_array_equal(tup.permute(1, 2, 0).numpy(), ref, err_msg=str(p))
        # ImageFolder trees: a path or the bytes of an archive member
        for payload in (str(p), p.read_bytes()):
            arr, _ = folder_decode([(str(p), payload)], rgb=False, workers=1)
            np.testing.assert_array_equal(arr[0], ref, err_msg=str(p))
        arr, _ = folder_decode([(str(p), str(p))], rgb=True, workers=1)
        np.testing.assert_array_equal(arr[0], np.repeat(ref, 3, axis=2) if ref.shape[2] == 1 else ref)
        # check: the (H, W, C) the loader will read, from a full decode or the header
        for decode in (True, False):
            assert inspect_image(str(p), decode) == (ref.shape, None), (p, decode)
        # import: the original is stored losslessly as decoded
        dst_o, dst_l = tmp_path / "out" / f"{p.stem}.png", tmp_path / "out" / f"{p.stem}_l.png"
        ch, err = _import_one((str(p), str(dst_o), str(p), str(dst_l), "png"))
        assert err is None and ch == ref.shape[2]
        np.testing.assert_array_equal(decode_image(dst_o), ref, err_msg=str(p))
        np.testing.assert_array_equal(decode_image(dst_l), ref, err_msg=str(p))


def test_every_reader_refuses_a_bad_file_naming_it(tmp_path):
    from opticsfree.captures.check import inspect_image
    from opticsfree.captures.loader import read_images as load_decode
    from opticsfree.captures.writer import read_image
    from opticsfree.data.imagefolder import decode_images as folder_decode

    p = tmp_path / "cut.jpeg"
    p.write_bytes(_truncated_jpeg())
    with pytest.raises(DataError, match="cut.jpeg"):
        read_image(p)
    with pytest.raises(DataError, match="cut.jpeg"):
        load_decode([str(p)], workers=1)
    with pytest.raises(DataError, match="cut.jpeg: cannot decode image"):
        folder_decode([(str(p), p.read_bytes())], rgb=False, workers=1)
    shape, problem = inspect_image(str(p), True)
    assert shape is None and "truncated" in problem


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_files_is_the_one_many_file_entry_point(tmp_path, workers, monkeypatch):
    """Paths, (name, bytes) and (name, path) items give decode_image's pixels and Pillow's
    format, in order, in this process and in worker processes; a bad file gives its reason."""
    from opticsfree.captures.loader import read_images
    from opticsfree.data.imagefolder import decode_files
    from opticsfree.utils import parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    files = _sample_files(tmp_path / "in")
    cut = tmp_path / "cut.jpeg"
    cut.write_bytes(_truncated_jpeg())
    items = [str(p) for p in files] + [(f"member:{p.name}", p.read_bytes()) for p in files] + [str(cut)]
    got = list(decode_files(items, workers=workers))
    assert len(got) == 2 * len(files) + 1
    for p, res in zip(files + files, got):
        arr, fmt = res
        np.testing.assert_array_equal(arr, decode_image(p), err_msg=str(p))
        assert fmt == Image.open(p).format
    assert isinstance(got[-1], str) and "truncated" in got[-1]
    # the loader's reader names the first bad file, as decode_image does
    with pytest.raises(DataError, match=r"cut\.jpeg: unreadable or truncated"):
        read_images([str(p) for p in files] + [str(cut)], workers=workers)
