"""The typer application and the error handling every command shares.

Commands are registered with :func:`command`, which wraps them so that a user error
(:class:`~opticsfree.errors.OpticsfreeError`) prints a single line ``error: ...`` on stderr and
exits with status 2: no traceback. A command is a thin wrapper over a library function.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer

from opticsfree.errors import OpticsfreeError

app = typer.Typer(
    name="opticsfree",
    help="Optics-free image classification: simulate a lensless camera, build capture sets, "
    "train and evaluate classifiers and reconstructions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into a one-line message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OpticsfreeError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to resume", code=130)

    return wrapper


def command(name: str | None = None, parent: typer.Typer | None = None, **kwargs: Any):
    """Register a command on ``parent`` (default: the top-level app) with error handling."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        (parent or app).command(name, **kwargs)(handle_errors(fn))
        return fn

    return deco


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
