"""The names the study's stages and its report share: a stage, the context a stage runs in, the
evaluated split, the upper-bound image kind, run labels and the JSON round trip.

This module sits below both :mod:`opticsfree.study.stages` (which plans and runs stages) and
:mod:`opticsfree.study.report` (which reads their outputs), so that imports inside the study
package point one way: ``config <- base <- report <- stages <- runner``.
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
        kind: what it does (a key of :data:`opticsfree.study.stages.STAGE_VERSIONS`).
        params: the JSON-ready part of the config the stage depends on.
        deps: names of the upstream stages whose outputs it reads.
        key: hash of kind, params and upstream keys (set by
            :func:`opticsfree.study.stages.assign_keys`).
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
        done: the DONE records of the finished stages, by name.
    """

    cfg: StudyConfig
    out: Path
    device: str
    outputs: dict[str, dict[str, Any]]
    stages: dict[str, Stage]
    log: Callable[[str], None]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_label(loss: str, images: str) -> str:
    """``triplet/lensless``: the loss/images part of train/evaluate/bayes stage names."""
    return f"{loss}/{images}"


def jsonable(x: Any) -> Any:
    """A JSON round trip of ``x`` (paths and other objects as strings)."""
    return json.loads(json.dumps(x, default=str))
