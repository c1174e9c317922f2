"""What ``predict`` reads: captures from files, folders and capture sets, grouped into scenes.

Inputs, in the order given:

- an image file: one capture;
- a folder: every file below it, recursively, in sorted path order (names starting with ``.``,
  files and folders, are left out: caches and temporary files); a file that is not an image is
  reported by name and skipped, like an unreadable one;
- a capture set (a folder with ``manifest.json`` and ``index.csv``): the ``lensless`` column of
  its index (every split, or ``--split``), with each row's scene id, frame and class name.

Frames of one scene (:func:`group_scenes`) are fused by the Bayesian update:

- ``--frames K``: consecutive captures, in input order, K at a time (K = 1: every
  capture is its own scene);
- otherwise, the naming rule of capture sets: files in one folder named ``<scene>_f<NN>.<ext>``
  (``NN`` digits) are frames ``NN`` of scene ``<scene>``; any other file is a scene of its own.
  In a capture set the index's ``id`` and ``frame`` columns group the rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from opticsfree.errors import ConfigError, DataError

#: The naming rule of frames: ``<scene>_f<NN>`` (the stem of a capture-set frame file).
FRAME_RE = re.compile(r"^(?P<scene>.+)_f(?P<frame>\d+)$")


@dataclass(frozen=True)
class Capture:
    """One capture to predict.

    Attributes:
        path: the image file.
        scene: the scene key its frames share.
        frame: its frame index within the scene.
        label: the class name when known (capture-set inputs), else None.
        reconstructed: True when the image is already a reconstruction (a derived capture set
            made by the run's own reconstruction model), so no front end applies.
    """

    path: str
    scene: str
    frame: int = 0
    label: str | None = None
    reconstructed: bool = False


def is_capture_set(path: Path) -> bool:
    """A folder with ``manifest.json`` and ``index.csv``."""
    return path.is_dir() and (path / "manifest.json").is_file() and (path / "index.csv").is_file()


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def _scene_by_name(path: Path) -> tuple[str, int]:
    """(scene key, frame) by the naming rule: ``dir/<scene>_fNN.ext`` -> (``dir/<scene>``, NN);
    any other file is its own scene, keyed by its path."""
    m = FRAME_RE.match(path.stem)
    if m:
        return str(path.parent / m.group("scene")), int(m.group("frame"))
    return str(path), 0


def _from_capture_set(root: Path, split: str | None, reconstruction_sha: str | None) -> list[Capture]:
    from opticsfree.captures.format import open_capture_set

    cs = open_capture_set(root)
    splits = cs.splits if split is None else [split]
    if split is not None and split not in cs.splits:
        raise DataError(f"{root}: no split {split!r} (have {', '.join(cs.splits)})")
    rec = cs.manifest.get("reconstruction") if isinstance(cs.manifest, dict) else None
    done = bool(reconstruction_sha and isinstance(rec, dict)
                and rec.get("model_sha256") == reconstruction_sha)
    out = []
    for s in splits:
        for r in cs.rows_for(s):
            out.append(Capture(str(cs.path(r.lensless)), f"{root}:{s}/{r.id}", r.frame,
                               r.label_name, done))
    return out


def collect_captures(inputs: Sequence[str | os.PathLike], frames_per_scene: int | None = None,
                     split: str | None = None,
                     reconstruction_sha: str | None = None) -> list[Capture]:
    """Expand INPUT arguments into captures with their scenes (see the module docstring).

    Args:
        inputs: image files, folders, capture sets.
        frames_per_scene: group consecutive captures K at a time; None: the naming rule.
        split: only this split of capture-set inputs (None: all).
        reconstruction_sha: the SHA-256 of the run's reconstruction model, if it has one: a
            capture set reconstructed by it is taken as already reconstructed.

    Returns:
        The captures, in input order.

    Raises:
        DataError: an input that does not exist, a folder without files, or a total not divisible
            by ``frames_per_scene``.
        ConfigError: ``frames_per_scene`` < 1.
    """
    if frames_per_scene is not None and frames_per_scene < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames_per_scene}")
    if not inputs:
        raise ConfigError("no INPUT given: name image files, folders or capture sets")
    caps: list[Capture] = []
    for item in inputs:
        p = Path(item)
        if is_capture_set(p):
            caps.extend(_from_capture_set(p, split, reconstruction_sha))
            continue
        if p.is_dir():
            files = _walk(p)
            if not files:
                raise DataError(f"{p}: no files in this folder (or below it)")
        elif p.exists():
            files = [p]
        else:
            raise DataError(f"{p}: not found")
        for f in files:
            scene, frame = _scene_by_name(f)
            caps.append(Capture(str(f), scene, frame))
    if frames_per_scene is not None:
        k = frames_per_scene
        if len(caps) % k:
            raise DataError(f"--frames {k}: {len(caps)} captures are not a whole number "
                            f"of scenes of {k} frames")
        caps = [Capture(c.path, caps[i - i % k].path if k > 1 else c.path, i % k, c.label,
                        c.reconstructed) for i, c in enumerate(caps)]
    return caps


@dataclass
class Scenes:
    """Captures grouped into scenes.

    Attributes:
        keys: S scene keys in order of first appearance.
        of_row: (N,) scene index of each capture.
        order: (N,) the captures' rows sorted by (scene, frame).
    """

    keys: list[str]
    of_row: np.ndarray
    order: np.ndarray

    def members(self) -> list[np.ndarray]:
        """Rows of each scene, frames in order."""
        bounds = np.flatnonzero(np.diff(self.of_row[self.order])) + 1
        return np.split(self.order, bounds)


def group_scenes(captures: Sequence[Capture]) -> Scenes:
    """Group captures by scene key (order of first appearance), frames sorted by index."""
    index: dict[str, int] = {}
    of_row = np.fromiter((index.setdefault(c.scene, len(index)) for c in captures),
                         dtype=np.int64, count=len(captures))
    frames = np.fromiter((c.frame for c in captures), dtype=np.int64, count=len(captures))
    order = np.lexsort((np.arange(len(captures)), frames, of_row))
    return Scenes(list(index), of_row, order)
