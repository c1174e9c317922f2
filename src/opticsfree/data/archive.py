"""Read selected members of a tar archive into memory, without extracting to disk."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Callable

from opticsfree.errors import DataError


def member_name(name: str) -> str:
    """A tar member name normalised to a relative POSIX path (no ``./`` or leading ``/``)."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def read_members(path: str | Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """The contents of the regular-file members of a tar archive that ``want`` accepts.

    The archive is read once, sequentially (compressed archives are not seekable cheaply),
    and nothing is written to disk, so member names cannot escape anywhere.

    Args:
        path: a tar archive, optionally gzip/bzip2/xz compressed.
        want: predicate on the normalised member name (see :func:`member_name`).

    Returns:
        ``{member name: bytes}`` in archive order.

    Raises:
        DataError: the file is not a readable tar archive (names the file).
    """
    path = Path(path)
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                name = member_name(m.name)
                if want(name):
                    f = tf.extractfile(m)
                    if f is not None:
                        out[name] = f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: not a readable tar archive ({type(e).__name__}: {e})".splitlines()[0]) from None
    return out
