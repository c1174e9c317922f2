"""Numeric options are bounded and a value outside the bounds is a one-line error naming the
option (``error: Invalid value for '--size': ...``, exit status 2), never a traceback or a
silent fallback. Generated from the command line's own option
list: a new numeric option without bounds fails here without anyone writing a test for it.
The reported cases are run for real on a small capture set."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
from typer.models import ArgumentInfo, OptionInfo
from typer.testing import CliRunner

from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app

runner = CliRunner()
#: Options whose huge values would exhaust memory or time: they need an upper bound too.
NEED_MAX = ("--size", "--batch-size", "--workers", "--threads", "--frames")
VALUES = (0, -1, 10**9)


def _commands(a, path=()):
    for c in a.registered_commands:
        yield path + (c.name or c.callback.__name__,), c.callback
    for g in a.registered_groups:
        yield from _commands(g.typer_instance, path + (g.name,))


def _unwrap(tp):
    if typing.get_origin(tp) is typing.Union or type(tp).__name__ == "UnionType":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _params(callback):
    """(name, type, info) of every typer parameter of a command callback."""
    for name, p in inspect.signature(callback, eval_str=True).parameters.items():
        tp, info = p.annotation, p.default
        if typing.get_origin(tp) is typing.Annotated:
            args = typing.get_args(tp)
            tp = args[0]
            info = next((x for x in args[1:] if isinstance(x, (OptionInfo, ArgumentInfo))), info)
        if isinstance(info, (OptionInfo, ArgumentInfo)):
            yield name, _unwrap(tp), info


def _flag(name: str, info) -> str:
    decls = [d for d in (info.param_decls or ()) if d.startswith("--")]
    return decls[0] if decls else "--" + name.replace("_", "-")


def _required_args(callback) -> list[str]:
    """Dummy values for every required parameter (positional ones first), so that parsing
    reaches the option under test."""
    pos, opts = [], []
    for name, tp, info in _params(callback):
        required = info.default is ... or (info.default is inspect.Parameter.empty)
        if not required:
            continue
        value = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Literal else \
            "1" if tp in (int, float) else "x"
        if isinstance(info, ArgumentInfo):
            pos.append(str(value))
        else:
            opts += [_flag(name, info), str(value)]
    return pos + opts


NUMERIC = [(path, cb, name, info) for path, cb in _commands(app) for name, tp, info in _params(cb)
           if tp in (int, float) and isinstance(info, OptionInfo)]


def test_the_walk_finds_the_commands_numeric_options():
    found = {(" ".join(p), _flag(n, i)) for p, _, n, i in NUMERIC}
    assert {("quality", "--size"), ("show", "--n"), ("train", "--size"), ("reconstruct train", "--batch-size"),
            ("camera info", "--size"), ("rig calibrate", "--repeats")} <= found
    assert len(found) > 50


@pytest.mark.parametrize("path, callback, name, info", NUMERIC,
                         ids=[f"{' '.join(p)} {_flag(n, i)}" for p, _, n, i in NUMERIC])
def test_every_numeric_option_is_bounded_and_refuses_what_is_outside(path, callback, name, info):
    flag = _flag(name, info)
    assert info.min is not None, f"{' '.join(path)} {flag}: declare min (cli/common.py has the shared bounds)"
    if flag in NEED_MAX:
        assert info.max is not None, f"{' '.join(path)} {flag}: a huge value would exhaust memory or time"
    for value in VALUES:
        inside = value >= info.min and (info.max is None or value <= info.max)
        if inside:
            continue  # a valid value: the command's own tests run it
        r = runner.invoke(app, [*path, *_required_args(callback), flag, str(value)])
        assert r.exit_code == 2, (path, flag, value, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: Invalid value for '{flag}'"), r.output


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_capture_set(tmp_path_factory.mktemp("bounds") / "set", n_classes=2, per_class=4, size=8)


@pytest.mark.parametrize("args", [
    ["quality", "{set}", "--size", "0"], ["quality", "{set}", "--size", "-3"],
    ["camera", "info", "seed", "--size", "0"], ["show", "{set}", "--out", "{tmp}/a.png", "--n", "0"],
    ["show", "{set}", "--out", "{tmp}/a.png", "--n", "-1"], ["train", "{set}", "--out", "{tmp}/r", "--size", "100000"],
    ["reconstruct", "train", "{set}", "--method", "unet", "--out", "{tmp}/m", "--batch-size", "0"],
])
def test_the_reported_cases_are_usage_errors(small, tmp_path, args):
    r = runner.invoke(app, [a.format(set=small, tmp=tmp_path) for a in args])
    assert r.exit_code == 2 and r.stderr.strip() == r.output.strip(), r.output
    assert r.stderr.startswith(f"error: Invalid value for '{args[-2]}'") and r.stderr.count("\n") == 1
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "r").exists() and not (tmp_path / "m").exists()
    assert Path(small, "index.csv").is_file()


def test_help_texts_list_every_camera_preset():
    from opticsfree.optics.config import list_presets

    for args in (["simulate", "--help"], ["camera", "info", "--help"]):
        out = " ".join(runner.invoke(app, args, terminal_width=400).output.translate(
            {ord(c): " " for c in "│╭╮╰╯─"}).split())
        assert f"({', '.join(list_presets())})" in out, args
