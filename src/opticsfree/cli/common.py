"""The typer application and the error handling every command shares.

Commands are registered with :func:`command`, which wraps them so that a user error
(:class:`~opticsfree.errors.OpticsfreeError`) prints a single line ``error: ...`` on stderr and
exits with status 2: no traceback, and Ctrl-C prints ``error: interrupted; <how to resume>`` and
exits with status 130 (each command states how it resumes: ``resume_hint``). A command is a thin
wrapper over a library function; output paths are checked before any work starts by
:func:`opticsfree.utils.io.check_out_dir` and :func:`~opticsfree.utils.io.check_out_file`.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, Iterable, Literal

import typer

from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.training.config import TrainConfig  # light: pydantic, no torch
from opticsfree.utils.parallel import EXECUTOR_NAMES  # light: the standard library

class OneLineErrors(typer.core.TyperGroup):
    """The command group whose usage errors (an unknown option, a value out of an option's
    bounds, a wrong choice, a missing argument) print one line, ``error: <what, naming the
    option>``, and exit with status 2, like every other user error; running a group without a
    command still shows its help."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as e:
            from typer import rich_utils

            rich_utils.rich_format_error(e)
            sys.exit(e.exit_code)
        except ClickException as e:
            message = " ".join(e.format_message().split())
            typer.echo(f"error: {message} (see --help)", err=True)
            sys.exit(e.exit_code)
        except Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    rich_markup_mode=None,
    name="opticsfree",
    cls=OneLineErrors,
    help="Optics-free image classification: simulate a lensless camera, build capture sets, "
    "train and evaluate classifiers and reconstructions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


#: Bounds of the numeric options every command shares, given as ``typer.Option(..., **SIZE)``: a
#: value outside them is a usage error naming the option before any work starts. Upper bounds
#: stand where a huge value would exhaust memory or time before a check could say so.
SIZE = {"min": 1, "max": 1024}          # image side in pixels (a 100,000 px side needs 30 GB per image)
BATCH = {"min": 1, "max": 65536}        # images per step or forward pass
WORKERS = {"min": 0, "max": 1024}       # processes (0: one per CPU)
THREADS = {"min": 1, "max": 1024}       # CPU threads
SEED = {"min": 0}                       # random seeds
LIMIT = {"min": 1}                      # at most N scenes (any larger N means all)
FRAMES = {"min": 1, "max": 99}          # frames per scene (files are named <id>_fNN)
EPOCHS = {"min": 1, "max": 100000}      # training epochs (TrainConfig's bound)
FRACTION = {"min": 0.0, "max": 0.9}     # share of train scenes held out
COUNT = {"min": 1}                      # how many of something (examples, evaluations)
POSITIVE = {"min": 0.0}                 # rates, tolerances: 0 is refused by the library's own check
GAMMA = {"min": 0.1, "max": 10.0}       # display/output gamma exponents


#: The command line's one grammar: every option that more than one command takes, with its
#: type, its bounds (one of the tables above, or ``None``) and its one meaning. A command that
#: takes one of these options keeps its type and bounds; tests/test_cli_grammar.py compares every
#: command against this table, so the grammar cannot drift. The two listed exceptions keep names
#: that the rig's contract fixed.
SHARED_OPTIONS: dict[str, tuple[type, dict | None, str]] = {
    "--size": (int, SIZE, "image side N in pixels (N x N)"),
    "--batch-size": (int, BATCH, "images per step or forward pass"),
    "--workers": (int, WORKERS, "worker processes; 0: one per CPU, 1: in this process"),
    "--threads": (int, THREADS, "torch (and onnxruntime) CPU threads"),
    "--seed": (int, SEED, "random seed"),
    "--limit": (int, LIMIT, "at most N scenes"),
    "--frames": (int, FRAMES, "frames (captures) per scene"),
    "--epochs": (int, EPOCHS, "training epochs"),
    "--val-fraction": (float, FRACTION, "share of train scenes held out for validation"),
    "--top": (int, COUNT, "the K most probable classes"),
    "--checkpoint": (str, None, "best, last or an epoch number"),
    "--json": (bool, None, "a flag: print JSON on stdout (progress stays on stderr)"),
    "--quiet": (bool, None, "a flag: no progress on stderr"),
    "--resume": (bool, None, "a flag: continue the output already in --out"),
    "--yes": (bool, None, "a flag: go ahead without asking"),
    "--amp": (bool, None, "--amp/--no-amp: bf16 autocast (default: where the CPU/GPU has native bf16)"),
    "--recipe": (str, None, "a bundled recipe (best, fast, seed) or a recipe file"),
    "--loss": (str, None, "a training loss"),
    "--executor": (str, None, "who runs the work: local (here, one after another) or ray (Ray tasks)"),
    "--address": (str, None, "a Ray cluster to join (--executor ray)"),
    "--mirror": (bool, None, "a flag: test-time mirroring (a capture and its left-right flip, averaged)"),
    "--reject": (bool, None, "a flag: flag captures beyond the run's validated distance threshold"),
    "--output-gamma": (float, GAMMA, "decoding of 8-bit captures to linear units"),
    "--set": (list, None, "KEY=VALUE, repeatable; VALUE parsed as JSON when it parses"),
    "--out": (object, None, "the output (file or folder) to write"),
    "--device": (str, None, "cpu or cuda"),
    "--split": (str, None, "a split of a capture set"),
    "--captures": (object, None, "another capture set to score"),
    "--prior": (str, None, "uniform, train or a JSON file of class -> probability"),
    "--dataset": (str, None, "a dataset name or folder"),
    "--camera": (str, None, "a camera preset, TOML or camera.npz"),
    "--rig": (object, None, "a rig TOML file"),
    "--data": (object, None, "where datasets are found or downloaded"),
}
#: Options a command takes under the shared name with another type or bounds, and why.
GRAMMAR_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("rig calibrate", "--size"): "the calibration pattern's side, 2-128 (a 32 x 32 sensor grid needs 2,048 patterns)",
    ("rig preview", "--frames"): "frames to run headless, as the rig's contract names it (--frames N --json)",
    ("live", "--frames"): "frames to classify, like rig preview",
}
#: Names retired for one of the shared options above; no command may take them.
RETIRED_OPTIONS: dict[str, str] = {"--frames-per-scene": "--frames", "--option": "--set", "-o": "--set"}


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: How a command resumes after Ctrl-C unless it says otherwise (its ``resume_hint``).
RERUN_TO_RESUME = "rerun the same command to resume"
#: The ``resume_hint`` of commands that continue an earlier run only when given ``--resume``.
RERUN_WITH_RESUME = "rerun the same command with --resume to continue where it stopped"
#: The ``resume_hint`` of short commands that do not resume but start over.
RERUN_TO_REDO = "rerun the same command (it starts over)"


def handle_errors(fn: Callable[..., Any], resume_hint: str = RERUN_TO_RESUME) -> Callable[..., Any]:
    """Turn user errors into a one-line message and exit status 2 (and keep freed memory for
    reuse, :func:`opticsfree.utils.runtime.keep_freed_memory`, before the command runs).

    Args:
        fn: the command function.
        resume_hint: what to do after Ctrl-C; printed as ``error: interrupted; <resume_hint>``
            (exit status 130).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from opticsfree.utils.runtime import keep_freed_memory

        keep_freed_memory()  # every command: large tensors reused, not faulted in again
        try:
            return fn(*args, **kwargs)
        except OpticsfreeError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail(f"interrupted; {resume_hint}", code=130)

    return wrapper


def command(name: str | None = None, parent: typer.Typer | None = None,
            resume_hint: str = RERUN_TO_RESUME, **kwargs: Any):
    """Register a command on ``parent`` (default: the top-level app) with error handling.

    Args:
        name: the command's name.
        parent: the typer app (group) it belongs to.
        resume_hint: how the command resumes after Ctrl-C (see :func:`handle_errors`); the
            default suits commands that resume by rerunning them unchanged, commands that need a
            flag say so (e.g. :data:`RERUN_WITH_RESUME`).
        **kwargs: passed to ``typer.Typer.command``.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        (parent or app).command(name, **kwargs)(handle_errors(fn, resume_hint))
        return fn

    return deco


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def choices(values: Iterable[str]) -> Any:
    """``Literal[*values]``: the annotation of an option whose value typer checks (a wrong
    value is a usage error that lists the choices, exit status 2)."""
    return Literal[tuple(values)]  # type: ignore[valid-type]


#: ``--executor`` choices (:data:`opticsfree.utils.parallel.EXECUTOR_NAMES`).
Executor = choices(EXECUTOR_NAMES)


def executor_option(unit: str) -> Any:
    """The ``--executor`` option of the commands that fan work out (``run``, ``tune``, ``camera
    sweep``); ``unit`` names what runs at once (``"stage"``, ``"trial"``, ``"point"``)."""
    return typer.Option("local", "--executor",
                        help=f"local: one {unit} after another here; ray: every {unit} whose inputs are ready "
                             "as a Ray task (extra: scale; docs/study.md, \"Running stages in parallel\")")


def address_option() -> Any:
    """The ``--address`` option that goes with :func:`executor_option`."""
    return typer.Option(None, "--address", metavar="ADDR",
                        help="join this Ray cluster (--executor ray; default: a local Ray with this "
                             "machine's cores)")


#: ``--device`` choices (train, reconstruct train|apply, run): TrainConfig's.
Device = TrainConfig.model_fields["device"].annotation


def other_captures_option(effect: str) -> Any:
    """The ``--captures DIR`` option of the commands that score a trained run (``evaluate``,
    ``bayes``): ``--split`` of another capture set with the same classes; ``effect`` ends the
    help text (what stays the run's own, what it adds)."""
    return typer.Option(
        None, "--captures",
        help="Score --split of another capture set with the same classes (e.g. a multi-frame "
             f"test set made with `simulate --frames K`); {effect}")


def parse_key_values(items: Iterable[str] | None, option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` items (``--set``) -> dict: the one grammar of ``train --set`` and
    ``reconstruct train --set``.

    VALUE is parsed as JSON when it parses (``3``, ``0.5``, ``true``, ``null``, ``[0.05,0.3]``),
    else taken as a string (``sgd``); ``-`` in KEY becomes ``_``; a later item overrides an
    earlier one. The values are then validated by the pydantic model that takes them.

    Raises:
        ConfigError: an item without ``=`` or with an empty KEY.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE (e.g. {option} lr=0.001)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def field_default(model: Any, field: str) -> str:
    """The default of a pydantic model's field as help text shows it (``show_default``)."""
    d = model.model_fields[field].default
    if isinstance(d, (list, tuple)):
        return ",".join(str(x) for x in d)
    return "none (derived)" if d is None else str(d)
