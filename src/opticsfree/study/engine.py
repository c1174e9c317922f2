"""The stage engine: stage keys, on-disk markers, and running a list of stages with resume.

The engine knows nothing of what a stage does: :func:`run_stages` gets the stages in
dependency order and a table of stage functions by kind (:data:`StageFunction`;
:func:`opticsfree.study.names.stage_functions`, the stage registry).

Each stage's output directory is ``OUT/stages/<name>-<key>``, ``key`` being the first 12 hex
digits of the SHA-256 of the stage's kind, its kind's version, the part of the config it depends
on (``params``) and the keys of its upstream stages (:func:`assign_keys`): changing a training
field changes the keys of that training stage and everything downstream of it, and nothing
upstream. A finished stage writes ``DONE.json`` (:class:`~opticsfree.study.base.StageRecord`)
atomically as its last act; a rerun skips stages whose marker exists and whose output files
are present, and re-enters an unfinished one, which resumes (simulation, training and
reconstruction training are resumable; the other stages are cheap). A failing stage leaves
``FAILED.json`` (message and traceback) and its partial output, and stops the run with
:class:`StageError`; ``ATTEMPTS.json`` accumulates the wall time of unfinished attempts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from opticsfree.errors import OpticsfreeError
from opticsfree.study.base import Stage, StageContext, StageRecord
from opticsfree.utils.io import ensure_dir, read_json, write_json

#: Marker of a finished stage.
DONE = "DONE.json"
#: Wall time of unfinished attempts of a stage (failed or interrupted), accumulated.
ATTEMPTS = "ATTEMPTS.json"
#: The last failure of a stage (message and traceback).
FAILED = "FAILED.json"

#: What a stage does: ``(stage, its directory, context) -> outputs`` (JSON-ready).
StageFunction = Callable[[Stage, Path, StageContext], dict[str, Any]]


class StageError(OpticsfreeError):
    """A stage failed; the message names the stage, the cause and what was kept."""


# ----------------------------------------------------------------------------------------------
# keys


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(kind: str, version: int, params: dict[str, Any], dep_keys: dict[str, str]) -> str:
    """:math:`\\mathrm{sha256}(\\mathrm{json}(kind, version, params, deps))`, first 12 hex digits."""
    blob = canonical_json({"kind": kind, "version": version, "params": params, "deps": dep_keys})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def assign_keys(stages: list[Stage], versions: Mapping[str, int]) -> list[Stage]:
    """Set every stage's key (stages must be in dependency order).

    Args:
        stages: the stages, each after the stages it depends on.
        versions: kind -> version (bumped when a kind's outputs change meaning).

    Raises:
        ValueError: a stage depends on one that comes later or not at all, or has a kind
            without a version.
    """
    keys: dict[str, str] = {}
    for s in stages:
        missing = [d for d in s.deps if d not in keys]
        if missing:
            raise ValueError(f"stage {s.name} depends on {missing}, which come later or not at all")
        if s.kind not in versions:
            raise ValueError(f"stage {s.name}: kind {s.kind!r} has no version")
        s.key = stage_key(s.kind, versions[s.kind], s.params, {d: keys[d] for d in s.deps})
        keys[s.name] = s.key
    return stages


# ----------------------------------------------------------------------------------------------
# markers


def read_done(directory: Path) -> StageRecord | None:
    """The record of a finished stage whose output files still exist, else None.

    A missing, unreadable or malformed ``DONE.json`` means the stage is unfinished (it runs
    again). ``files`` in the marker are relative to the study directory (``directory/../..``).
    """
    path = directory / DONE
    if not path.is_file():
        return None
    try:
        record = StageRecord.from_json(read_json(path))
    except OpticsfreeError:      # not JSON
        return None
    except (KeyError, TypeError, ValueError):   # JSON, but not a stage record
        return None
    out = directory.parent.parent
    if not all((out / f).exists() for f in record.files):
        return None
    return record


def _attempts(directory: Path) -> list[dict[str, Any]]:
    """The unfinished attempts recorded in ``ATTEMPTS.json`` (none when unreadable)."""
    p = directory / ATTEMPTS
    if not p.is_file():
        return []
    try:
        data = read_json(p)
    except OpticsfreeError:
        return []
    return data if isinstance(data, list) else []


def files_in(outputs: Any, out: Path) -> list[str]:
    """Existing paths inside the study directory named in ``outputs`` (relative to it)."""
    found: list[str] = []
    base = str(out.resolve())

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, str) and os.path.isabs(x):
            p = os.path.abspath(x)
            if p.startswith(base + os.sep) and os.path.exists(p):
                found.append(os.path.relpath(p, base))

    walk(outputs)
    return sorted(set(found))


# ----------------------------------------------------------------------------------------------
# running


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def execute_stage(stage: Stage, ctx: StageContext, fn: StageFunction) -> tuple[StageRecord, str]:
    """Run ``stage`` with ``fn`` unless it is finished.

    Returns:
        ``(record, "ran" | "skipped")``.

    Raises:
        StageError: the stage failed (the message names it; its partial output and a
            FAILED.json stay for inspection, finished stages are untouched).
    """
    directory = stage.directory(ctx.out)
    done = read_done(directory)
    if done is not None:
        return done, "skipped"
    ensure_dir(directory)
    resumed = any(p.name not in (ATTEMPTS, FAILED) for p in directory.iterdir())
    t0 = time.perf_counter()
    started = _now()
    ok = False
    try:
        outputs = fn(stage, directory, ctx)
        ok = True
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised as StageError naming the stage
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, OpticsfreeError):
            msg = f"{type(e).__name__}: {msg}"
        write_json(directory / FAILED, {"stage": stage.name, "error": msg, "type": type(e).__name__,
                                        "traceback": traceback.format_exc()})
        raise StageError(f"stage {stage.name} failed: {msg} (details: {directory / FAILED}; "
                         f"finished stages are kept, rerun the same command to resume)") from e
    finally:
        if not ok:
            attempts = _attempts(directory) + [{"started": started, "wall_s": time.perf_counter() - t0}]
            # the stage's own error (or Ctrl-C) is what the user must see, not a failed write
            with contextlib.suppress(OpticsfreeError):
                write_json(directory / ATTEMPTS, attempts)
    wall = time.perf_counter() - t0
    earlier = sum(float(a.get("wall_s", 0.0)) for a in _attempts(directory))
    record = StageRecord(stage=stage.name, kind=stage.kind, key=stage.key, params=stage.params,
                         deps={d: ctx.stages[d].key for d in stage.deps}, outputs=outputs,
                         files=files_in(outputs, ctx.out), wall_s=wall, wall_s_total=wall + earlier,
                         resumed=resumed, started=started, finished=_now(), node=platform.node())
    (directory / FAILED).unlink(missing_ok=True)
    write_json(directory / DONE, record.to_json())
    return record, "ran"


@dataclass(frozen=True)
class StageRun:
    """What :func:`run_stages` did with one stage."""

    stage: Stage
    record: StageRecord
    status: str           # "ran" | "skipped"

    @property
    def wall_s(self) -> float:
        """The stage's wall time, all attempts."""
        return self.record.wall_s_total


def run_stages(stages: list[Stage], ctx: StageContext, functions: Mapping[str, StageFunction]) -> list[StageRun]:
    """Run the unfinished stages in order, skipping finished ones; fills ``ctx.outputs`` and
    ``ctx.done``. Logs one line per stage event through ``ctx.log``.

    Raises:
        StageError: a stage failed (stages after it are not run).
        KeyError: a stage's kind has no function in ``functions``.
    """
    runs: list[StageRun] = []
    for i, stage in enumerate(stages, start=1):
        prefix = f"[{i}/{len(stages)}] {stage.name}"
        fn = functions[stage.kind]
        if read_done(stage.directory(ctx.out)) is None:
            ctx.log(f"{prefix}: running ({stage.directory(ctx.out).name})")
        record, status = execute_stage(stage, ctx, fn)
        ctx.outputs[stage.name] = record.outputs
        ctx.done[stage.name] = record
        if status == "skipped":
            ctx.log(f"{prefix}: done earlier, skipped")
        else:
            ctx.log(f"{prefix}: finished in {record.wall_s_total:.1f} s")
        runs.append(StageRun(stage, record, status))
    return runs
