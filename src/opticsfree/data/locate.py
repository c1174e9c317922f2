"""Where dataset copies are looked for: ``$OPTICSFREE_DATA``, then the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from opticsfree.errors import DataError
from opticsfree.utils.paths import cache_dir

#: Environment variable naming a directory that holds local dataset copies.
ENV_VAR = "OPTICSFREE_DATA"


def env_data_dir() -> Path | None:
    """``$OPTICSFREE_DATA`` as a Path when it is set and is a directory, else None."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_dir() else None


def datasets_dir() -> Path:
    """The user cache's download directory, ``cache_dir("datasets")``."""
    return cache_dir("datasets")


def search_roots() -> list[Path]:
    """Directories searched for known dataset forms when no ``data`` path is given, in order."""
    roots = []
    env = env_data_dir()
    if env is not None:
        roots.append(env)
    roots.append(datasets_dir())
    return roots


def existing_path(data: str | os.PathLike, expected: str) -> Path:
    """``data`` as a Path, or DataError naming it and the ``expected`` forms if it is missing."""
    p = Path(data).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or directory (expected {expected})")
    return p


def offline_message(name: str, searched: list[Path], reason: str, get: str) -> str:
    """The message for a dataset that is neither local nor downloadable.

    Args:
        name: dataset name.
        searched: directories that were searched.
        reason: why the download failed.
        get: what to download by other means.
    """
    where = ", ".join(str(p) for p in searched)
    return (f"{name}: no local copy found (searched {where}) and the download failed ({reason}); "
            f"get {get} and pass --data PATH, or put it in a directory named by ${ENV_VAR}")
