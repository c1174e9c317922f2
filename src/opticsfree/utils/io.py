"""Atomic file output: write to a temporary file in the same directory, then rename.

A reader never sees a half-written file, and an interrupted run leaves either the old file or
nothing. Temporary names end in ``.tmp`` so that an interrupted run's leftovers are easy to
recognise and are ignored by every reader in this package.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Iterator

from opticsfree.errors import ConfigError, OpticsfreeError


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or raise a clear error if it cannot be written."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OpticsfreeError(f"cannot create output directory {p}: {e.strerror}") from None
    if not os.access(p, os.W_OK):
        raise OpticsfreeError(f"output directory {p} is not writable")
    return p


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read once, by setting and restoring it: not on every write, since
    the brief umask of 0 would affect files other threads create meanwhile)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, set_mode: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Args:
        path: the final file name.
        set_mode: give the final file the usual permissions (below); False keeps the mode of
            whatever the caller put at the temporary path (e.g. a hard link to another file,
            whose mode is that file's and must not change).

    Yields:
        A temporary file path in the same directory (so the rename is atomic). On an
        exception the temporary file is removed and ``path`` is left untouched. The final file
        gets the usual permissions (``0o666`` minus the umask), not the temporary file's 0600.
    """
    final = Path(path)
    ensure_dir(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if set_mode and tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising a one-line error that names the file on failure."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OpticsfreeError(f"{p}: file not found") from None
    except json.JSONDecodeError as e:
        raise OpticsfreeError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from None


def read_toml(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """Read a TOML config file, raising a one-line :class:`ConfigError` that names the file.

    Args:
        path: the file.
        what: what the file is, for the "not found" message (e.g. ``"camera file"``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read ({e})") from None


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path``.

    Saved through memory, so that the same object gives the same bytes: saved to a file, torch
    names the archive inside after that file (here a random temporary name).
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_torch(path: str | os.PathLike) -> Any:
    """Safely load a checkpoint (``weights_only=True``: tensors and plain containers only)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise OpticsfreeError(f"{p}: checkpoint not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = (str(e).splitlines() or [""])[0].split(". ")[0].rstrip(".")  # torch appends advice
        raise OpticsfreeError(f"{p}: not a readable opticsfree checkpoint ({type(e).__name__}: {first})") from None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_state(path: str | os.PathLike) -> str | None:
    """``size, mtime_ns, ctime_ns, inode`` of a file as text, or None when it cannot be stat'ed.

    The one cheap check of a file's content that caches use: writing a file's bytes changes its
    change time (``ctime``), which, unlike the modification time, cannot be set back (``cp -p``
    and ``rsync -t`` restore ``mtime`` only), and replacing it by rename changes the inode. A
    cache keyed on it is rebuilt whenever the bytes may have changed (and, harmlessly, after a
    ``chmod`` or a copy to another disk).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{st.st_size}\x1f{st.st_mtime_ns}\x1f{st.st_ctime_ns}\x1f{st.st_ino}"


def _blocking_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a directory (else None)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_writable(p: Path, option: str) -> None:
    """ConfigError when the directory that ``p`` would be written in (``p`` itself when it is an
    existing directory, else its nearest existing ancestor) is not writable."""
    base = p if p.is_dir() else next((a for a in p.absolute().parents if a.exists()), None)
    if base is not None and base.is_dir() and not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: {base} is not writable; choose an output you can write")


def check_out_dir(path: str | os.PathLike, what: str = "a directory", option: str = "--out") -> Path:
    """Check that ``path`` can be an output directory before any work starts.

    Raises:
        ConfigError: ``path`` (or a parent of it) exists and is not a directory, or the
            directory it would be made in is not writable; the message names the option and
            what was expected.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: is a file; expected {what}")
    blocker = _blocking_ancestor(p)
    if blocker is not None:
        raise ConfigError(f"{option} {p}: {blocker} is a file; expected {what} (its parent must "
                          "be a directory)")
    _check_writable(p, option)
    return p


def check_out_file(path: str | os.PathLike, what: str = "a file", option: str = "--out") -> Path:
    """Check that ``path`` can be an output file before any work starts.

    Raises:
        ConfigError: ``path`` is an existing directory, a parent of it is a file, or the
            directory it would be written in is not writable; the message names the option and
            what was expected.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} {p}: is a directory; expected {what}")
    blocker = _blocking_ancestor(p)
    if blocker is not None:
        raise ConfigError(f"{option} {p}: {blocker} is a file; expected {what} in a directory")
    _check_writable(p, option)
    return p



def check_plan_dir(out: Path, plan_file: str, plan: dict[str, Any], what: str,
                   fix: str = "use another --out or delete it", resume: bool | None = None) -> None:
    """Check that ``out`` is new, or holds the same job (its ``plan_file`` equals ``plan``).

    The rule of the commands that resume by their settings (``simulate``, ``rig capture``).

    Args:
        out: the output directory.
        plan_file: the file in ``out`` that holds the settings of the job that made it.
        plan: the settings of this call.
        what: the job, for messages (``"a simulation"``).
        fix: what to do when the settings differ.
        resume: None: an equal plan resumes by itself; False: an existing plan needs
            ``--resume`` (an error says so); True: ``--resume`` was given.

    Raises:
        OpticsfreeError: ``out`` holds another job (the differing keys named), holds something
            else, or needs ``--resume``.
    """
    plan_path = out / plan_file
    if plan_path.is_file():
        if resume is False:
            raise OpticsfreeError(f"{out} holds {what}; add --resume to continue it, or use another --out")
        old = read_json(plan_path)
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise OpticsfreeError(f"{out} holds {what} with different settings ({', '.join(diff)}); {fix}")
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise OpticsfreeError(f"{out} exists and is not an opticsfree {what.split(' ', 1)[1]}; use another --out")


def bundled_or_file(name_or_path: str | os.PathLike, names: list[str], folder: Path, what: str) -> Path:
    """The TOML file of a bundled ``name`` (``folder/<name>.toml``) or the path given.

    The one rule of the options that take a bundled name or a file (``--camera``, ``--recipe``):
    a bare word that is not an existing path is a name.

    Raises:
        ConfigError: an unknown name (one line listing the bundled ones).
    """
    s = str(name_or_path)
    path = Path(s)
    if not path.suffix and not path.exists():
        if s not in names:
            raise ConfigError(f"unknown {what} '{s}' (bundled: {', '.join(names)}; or give a .toml file)")
        path = folder / f"{s}.toml"
    return path


def validate_file(model: Any, data: dict[str, Any], path: str | os.PathLike) -> Any:
    """``model(**data)`` for a file's content; a validation failure is one line naming the
    file and the field (``PATH: field 'a.b': unknown field``)."""
    from pydantic import ValidationError

    try:
        return model(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{path}: field '{loc}': {msg}") from None
