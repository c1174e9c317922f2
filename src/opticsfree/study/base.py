"""The names the study's engine, stages and report share: a stage, the record of a finished
stage, the context a stage runs in, the evaluated split, the upper-bound image kind, run labels
and the JSON round trip.

This module sits below :mod:`opticsfree.study.engine` (keys, markers, running a stage),
:mod:`opticsfree.study.plan` (which stages a config has), :mod:`opticsfree.study.stages` (what
each kind of stage does) and :mod:`opticsfree.study.report` (which reads their outputs), so that
imports inside the study package point one way (docs/study.md, "Library").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from opticsfree.study.config import StudyConfig

#: Image kind of the clean-image upper bound (captures through a lens).
UPPER_BOUND = "upper-bound"
#: Split evaluated everywhere.
TEST = "test"


@dataclass
class Stage:
    """One step of the study.

    Attributes:
        name: unique name, e.g. ``train/triplet/lensless``.
        kind: what it does (a kind registered in :mod:`opticsfree.study.names`: its version
            and its function).
        params: the JSON-ready part of the config the stage depends on.
        deps: names of the upstream stages whose outputs it reads.
        key: hash of kind, params and upstream keys (set by
            :func:`opticsfree.study.engine.assign_keys`).
    """

    name: str
    kind: str
    params: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def slug(self) -> str:
        """File-system name: ``train-triplet-lensless``."""
        return self.name.replace("/", "-")

    def directory(self, out: str | os.PathLike) -> Path:
        """``OUT/stages/<slug>-<key>``."""
        return Path(out) / "stages" / f"{self.slug}-{self.key}"


@dataclass(frozen=True)
class StageRecord:
    """The ``DONE.json`` of a finished stage.

    Attributes:
        stage, kind, key: the stage's name, kind and key.
        params: the config part the key hashes.
        deps: upstream stage name -> its key.
        outputs: what the stage function returned (JSON-ready; read by downstream stages).
        files: the files named in ``outputs``, relative to the study directory (a rerun
            re-runs the stage when one is missing).
        wall_s: wall time of the attempt that finished; wall_s_total: of all attempts.
        resumed: whether the finishing attempt found earlier partial output.
        started, finished: local time stamps of the finishing attempt.
        node: the machine it ran on (empty in records written before it was recorded).
    """

    stage: str
    kind: str
    key: str
    params: dict[str, Any]
    deps: dict[str, str]
    outputs: dict[str, Any]
    files: list[str]
    wall_s: float
    wall_s_total: float
    resumed: bool
    started: str
    finished: str
    node: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "StageRecord":
        """Parse a DONE.json; KeyError/TypeError/ValueError when it is not one."""
        return cls(stage=str(d["stage"]), kind=str(d["kind"]), key=str(d["key"]),
                   params=dict(d["params"]), deps=dict(d["deps"]), outputs=dict(d["outputs"]),
                   files=[str(f) for f in d["files"]], wall_s=float(d["wall_s"]),
                   wall_s_total=float(d["wall_s_total"]), resumed=bool(d["resumed"]),
                   started=str(d["started"]), finished=str(d["finished"]), node=str(d.get("node", "")))

    def to_json(self) -> dict[str, Any]:
        """The content of DONE.json."""
        return {"stage": self.stage, "kind": self.kind, "key": self.key, "params": self.params,
                "deps": self.deps, "outputs": self.outputs, "files": self.files,
                "wall_s": self.wall_s, "wall_s_total": self.wall_s_total, "resumed": self.resumed,
                "started": self.started, "finished": self.finished, "node": self.node}


@dataclass
class StageContext:
    """What a stage function gets besides its own directory.

    Attributes:
        cfg: the study config.
        out: the study directory.
        device: ``cpu`` or ``cuda``.
        outputs: outputs of the finished stages, by name.
        stages: every stage of the plan, by name.
        log: a function printing one progress line.
        done: the records of the finished stages, by name.
    """

    cfg: StudyConfig
    out: Path
    device: str
    outputs: dict[str, dict[str, Any]]
    stages: dict[str, Stage]
    log: Callable[[str], None]
    done: dict[str, StageRecord] = field(default_factory=dict)


def run_label(loss: str, images: str) -> str:
    """``triplet/lensless``: the loss/images part of train/evaluate/bayes stage names."""
    return f"{loss}/{images}"


def jsonable(x: Any) -> Any:
    """A JSON round trip of ``x`` (paths and other objects as strings)."""
    return json.loads(json.dumps(x, default=str))
