"""``opticsfree run CONFIG.toml``: the whole study in one command, and its report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from opticsfree.cli.common import Device, Executor, address_option, command, executor_option, print_json



@command("run")
def run_command(
    config: Path = typer.Argument(..., help="study config (TOML), e.g. configs/quick.toml"),
    out: Optional[Path] = typer.Option(None, "--out", help="study directory [runs/<study name>]"),
    device: Optional[Device] = typer.Option(None, "--device", help="device",
                                            show_default="the config's [study] device"),
    json_: bool = typer.Option(False, "--json", help="print the summary (stages, report paths) as JSON"),
    executor: Executor = executor_option("stage"),
    address: Optional[str] = address_option(),
) -> None:
    """Run a study: data -> captures -> tuples -> reconstructions -> training -> evaluation ->
    Bayes -> report (OUT/report.html, report.md, results.json). A rerun skips finished stages
    and resumes an interrupted one."""
    from opticsfree.study.runner import run_study

    summary = run_study(config, out, device, executor=executor, address=address)
    if json_:
        print_json(summary)
    else:
        ran = sum(s["status"] == "ran" for s in summary["stages"])
        typer.echo(f"{ran} of {len(summary['stages'])} stages ran ({summary['wall_s']:.1f} s); "
                   f"report: {summary['report']['html']}")
