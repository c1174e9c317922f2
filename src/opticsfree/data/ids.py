"""Stable, unique, file-name-safe sample ids."""

from __future__ import annotations

import re
from typing import Iterable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9._-]`` replaced by ``_``.

    The result is usable as a file stem on every common file system (no separators, no
    spaces, no leading dot).
    """
    stem = _UNSAFE.sub("_", text).strip("_")
    stem = stem.lstrip(".")
    return stem or "item"


def unique_ids(raw: Iterable[str]) -> list[str]:
    """Make ids file-name-safe and unique, deterministically.

    Each id goes through :func:`safe_stem`; the second and later occurrences of the same
    stem get ``_2``, ``_3``, ... appended (in input order), so the same input always gives the
    same ids.

    Args:
        raw: candidate ids in sample order.

    Returns:
        The ids, one per input, unique.
    """
    out: list[str] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for r in raw:
        base = safe_stem(r)
        cand = base
        k = counts.get(base, 1)
        while cand in seen:
            k += 1
            cand = f"{base}_{k}"
        counts[base] = k
        seen.add(cand)
        out.append(cand)
    return out
