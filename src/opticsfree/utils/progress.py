"""Rich progress bars shared by every long-running command."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: Console for progress and status output (stderr, so ``--json`` stdout stays clean).
console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second of a task (``12.3 scenes/s``), blank until rich has measured it."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.1f} {self.unit}/s")


def progress(transient: bool = False, unit: str | None = None) -> Progress:
    """A progress bar with description, bar, count, elapsed and remaining time (and the rate
    in ``unit``/s when given).

    Disabled automatically when stderr is not a terminal (CI logs stay readable).
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(RateColumn(unit))
    return Progress(
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not sys.stderr.isatty(),
    )


def progress_line(text: str) -> None:
    """One line of progress on stderr (a terminal and a log alike; never on ``--json`` stdout),
    e.g. one per training epoch."""
    console.print(text, soft_wrap=True, highlight=False)
