"""Atomic file output: all-or-nothing writes with ordinary permissions."""

import os

import pytest

from opticsfree.utils.io import atomic_path, read_toml, write_text
from opticsfree.errors import ConfigError


def test_atomic_write_is_all_or_nothing_and_gets_umask_permissions(tmp_path):
    from opticsfree.utils import io

    old = os.umask(0o022)
    io._umask.cache_clear()
    try:
        target = tmp_path / "sub" / "out.txt"
        write_text(target, "hello")
        assert target.read_text() == "hello"
        assert (target.stat().st_mode & 0o777) == 0o644  # not the temporary file's 0600
        with pytest.raises(RuntimeError):
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                raise RuntimeError("interrupted")
        assert target.read_text() == "hello"
        assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temp file left
    finally:
        os.umask(old)
        io._umask.cache_clear()


def test_read_toml_names_the_file(tmp_path):
    good = tmp_path / "a.toml"
    good.write_text("[x]\ny = 1\n")
    assert read_toml(good) == {"x": {"y": 1}}
    bad = tmp_path / "b.toml"
    bad.write_text("[x\n")
    with pytest.raises(ConfigError, match="b.toml: invalid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="c.toml: camera file not found"):
        read_toml(tmp_path / "c.toml", "camera file")


def test_save_torch_gives_the_same_bytes_for_the_same_object(tmp_path):
    """A checkpoint's bytes depend on its content only (torch would name the archive inside a
    file after the random temporary file it writes first)."""
    import torch

    from opticsfree.utils.io import load_torch, save_torch

    state = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3}
    save_torch(tmp_path / "a.pt", state)
    save_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_torch(tmp_path / "a.pt")["w"], state["w"])
    assert not list(tmp_path.glob(".*.tmp"))
