"""Rich progress bars shared by every long-running command."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Console for progress and status output (stderr, so ``--json`` stdout stays clean).
console = Console(stderr=True)


def progress(transient: bool = False) -> Progress:
    """A progress bar with description, bar, count, elapsed and remaining time.

    Disabled automatically when stderr is not a terminal (CI logs stay readable).
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not sys.stderr.isatty(),
    )
