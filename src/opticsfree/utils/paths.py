"""Where opticsfree keeps downloaded datasets and derived caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The user cache directory (``$OPTICSFREE_CACHE``, else ``$XDG_CACHE_HOME/opticsfree``,
    else ``~/.cache/opticsfree``), joined with ``parts`` and created if needed."""
    root = os.environ.get("OPTICSFREE_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "opticsfree")
    p = Path(root).joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
