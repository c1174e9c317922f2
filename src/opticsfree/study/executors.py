"""Executors: who runs the study's stages. ``local`` runs them one after another in this
process (:func:`opticsfree.study.engine.run_stages`); ``ray`` hands every stage whose upstream
stages are finished to Ray as a task, so independent stages run at once, on this machine or on
a Ray cluster.

The engine's markers stay the only source of truth: a task runs
:func:`~opticsfree.study.engine.execute_stage`, which skips a finished stage, re-enters an
unfinished one (it resumes) and writes ``DONE.json`` as its last act. A worker that dies is
retried by Ray (3 times, :class:`~opticsfree.utils.parallel.RayTasks`), and its retry resumes from the stage's partial output; a
killed study (Ctrl-C, a lost driver) is resumed by ``run`` with either executor. The stages are
the same functions with the same seeds, and each task runs with the driver's number of torch
threads and OpenMP/BLAS threads, so the files and numbers equal the local executor's (only the
timings differ). Every node must see the study
directory at the same path (a shared file system on a cluster).

Resources per task (:func:`stage_resources`): the heavy kinds (``StageSpec.heavy`` in the stage
registry, :mod:`opticsfree.study.names`: simulation, training, reconstruction training and
application) ask for :data:`HEAVY_CPUS` CPUs, or one GPU when the study runs on ``cuda``; the
others one CPU. Ray queues a task until its resources are free.
Ray is an optional extra (``pip install 'opticsfree[scale]'``), imported only here.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.study.base import Stage, StageContext, StageRecord
from opticsfree.study.engine import StageError, StageFunction, StageRun, execute_stage, read_done, run_stages
from opticsfree.study.names import stage_spec
from opticsfree.utils.parallel import EXECUTOR_NAMES, RayTasks, check_executor

#: CPUs a heavy stage asks for (at most the cluster's largest node; Ray queues the rest).
HEAVY_CPUS = 2


def stage_resources(stage: Stage, device: str) -> dict[str, float]:
    """The Ray resources of a stage's task: ``{"num_cpus": ..., "num_gpus": ...}`` (a heavy kind,
    ``StageSpec.heavy``: :data:`HEAVY_CPUS` CPUs, or one GPU on ``cuda``; any other one CPU).

    Raises:
        ConfigError: the stage's kind is not registered.
    """
    heavy = stage_spec(stage.kind).heavy
    if heavy and device == "cuda":
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": min(HEAVY_CPUS, os.cpu_count() or 1) if heavy else 1, "num_gpus": 0}


def _worker_log(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _run_stage_task(stage: Stage, ctx: StageContext, fn: StageFunction) -> tuple[dict, str]:
    """A Ray task: one stage; returns its record as JSON (with the node it ran on) and its status."""
    record, status = execute_stage(stage, ctx, fn)
    return record.to_json(), status


def run_stages_ray(stages: list[Stage], ctx: StageContext, functions: Mapping[str, StageFunction],
                   address: str | None = None) -> list[StageRun]:
    """Run the unfinished stages as Ray tasks (:class:`~opticsfree.utils.parallel.RayTasks`),
    each once its upstream stages are finished (finished stages are skipped, as locally); fills
    ``ctx.outputs`` and ``ctx.done``.

    Args:
        stages: the stages, in dependency order.
        ctx: the study context (its ``log`` prints the driver's lines).
        functions: stage functions by kind.
        address: a Ray cluster to join (None: the running Ray instance of this process, or a
            new local one with this machine's cores).

    Returns:
        What happened to each stage, in the order of ``stages`` (``record.node``: where it ran).

    Raises:
        ConfigError: Ray is not installed (one line saying how to install it).
        StageError: a stage failed (the other running tasks are cancelled; finished stages keep
            their markers).
    """
    runs: dict[str, StageRun] = {}
    pending = list(stages)
    index = {s.name: i for i, s in enumerate(stages, start=1)}

    def prefix(s: Stage) -> str:
        return f"[{index[s.name]}/{len(stages)}] {s.name}"

    def finish(s: Stage, record: StageRecord, status: str) -> None:
        ctx.outputs[s.name] = record.outputs
        ctx.done[s.name] = record
        runs[s.name] = StageRun(s, record, status)
        ctx.log(f"{prefix(s)}: " + ("done earlier, skipped" if status == "skipped" else
                                    f"finished in {record.wall_s_total:.1f} s on {record.node}"))

    with RayTasks(address) as tasks:
        while pending or tasks.inflight:
            while ready := [s for s in pending if all(d in ctx.done for d in s.deps)]:
                s = ready[0]  # one at a time: a skipped stage can make its dependents ready
                pending.remove(s)
                done = read_done(s.directory(ctx.out))
                if done is not None:  # finished earlier: its dependents may be ready now
                    finish(s, done, "skipped")
                    continue
                remote_ctx = StageContext(cfg=ctx.cfg, out=ctx.out, device=ctx.device, outputs=dict(ctx.outputs),
                                          stages=ctx.stages, log=_worker_log, done=dict(ctx.done))
                tasks.submit(s, _run_stage_task, s, remote_ctx, functions[s.kind],
                             **stage_resources(s, ctx.device))
                ctx.log(f"{prefix(s)}: submitted to ray ({s.directory(ctx.out).name})")
            if not tasks.inflight:
                if pending:
                    raise ConfigError(f"stages {', '.join(s.name for s in pending)} wait for stages "
                                      "that are not in the plan")
                break
            try:
                s, (rec, status) = tasks.next_done()
            except OpticsfreeError as e:
                raise StageError(str(e).splitlines()[0]) from None
            except Exception as e:  # noqa: BLE001 - Ray's own failures, named for the user
                raise StageError(f"a stage failed on ray: {str(e).splitlines()[0]}") from None
            finish(s, StageRecord.from_json(rec), status)
    return [runs[s.name] for s in stages]


def _run_local(stages: list[Stage], ctx: StageContext, functions: Mapping[str, StageFunction],
               address: str | None = None) -> list[StageRun]:
    check_executor("local", address)
    return run_stages(stages, ctx, functions)


#: The executors by name (``opticsfree run --executor``; the names: ``utils.parallel.EXECUTOR_NAMES``).
EXECUTORS: dict[str, Callable[..., list[StageRun]]] = dict(zip(EXECUTOR_NAMES, (_run_local, run_stages_ray)))
