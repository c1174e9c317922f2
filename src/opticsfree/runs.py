"""The run layer: the directory a training or reconstruction run writes.

Embedding training (:mod:`opticsfree.training`) and reconstruction training
(:mod:`opticsfree.reconstruction.train`) both keep their runs through this module, and nothing
else writes a run's ``config.json``, ``metrics.jsonl`` or checkpoints. A run directory
(:class:`RunDir`, its names given by a :class:`RunKind`) holds::

    config.json                 the run's configuration, one JSON object (RunDir.write_config);
                                --resume compares it with the new one (ResumeCheck)
    metrics.jsonl               one JSON object per finished epoch (RunDir.append_metrics;
                                read_metrics_file reads one from anywhere)
    checkpoints/epoch_NNN.pt    checkpoints of chosen epochs (RunDir.checkpoint_path)
    <resume state>              the state after the last finished epoch (RunKind.resume_file)

Checkpoints are dicts of tensors and plain containers, written atomically with every tensor on
the CPU (:func:`save_state`) and read with ``torch.load(weights_only=True)``
(:func:`load_state`); :func:`capture_rng` and :func:`restore_rng` put the random-number state
in them, so that a resumed run draws what an uninterrupted one would. docs/formats.md ("Run
directories") lists what each kind of run stores.

The runtime a run computes in (device, bf16 autocast, channels_last, torch threads) is
:mod:`opticsfree.utils.runtime`; seeding is :func:`opticsfree.utils.seeding.seed_everything` and
:func:`~opticsfree.utils.seeding.derive_seed`.

torch is imported inside the functions that need it, so that configs importing this module load
without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from opticsfree.errors import ConfigError, DataError
from opticsfree.utils.io import check_out_dir, ensure_dir, load_torch, read_json, save_torch, write_json, write_text

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
_EPOCH_RE = re.compile(r"^epoch_(\d{3,})\.pt$")


# ----------------------------------------------------------------------------------------------
# config comparison


@dataclass(frozen=True)
class ConfigDifference:
    """One field in which a new config differs from the recorded one.

    Attributes:
        field: the field's name (``resolved.size`` or ``option width`` for a nested value).
        recorded: its value in the recorded config (None when absent).
        current: its value in the new config (None when absent).
    """

    field: str
    recorded: Any
    current: Any


@dataclass(frozen=True)
class Nested:
    """A dict-valued config field compared value by value.

    Attributes:
        label: prefix of the reported field names (``"resolved."`` gives ``resolved.size``).
        keys: the keys compared, in order (None: every key of either side, sorted).
        defaults: values of keys added later (a missing key counts as this value; see
            :attr:`ResumeCheck.defaults`).
    """

    label: str
    keys: tuple[str, ...] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumeCheck:
    """Which fields of ``config.json`` must agree for a run to be resumed (or a checkpoint loaded).

    Attributes:
        fields: the top-level fields compared, in order (None: every field of either config,
            sorted, less ``ignore``).
        ignore: fields that may differ (runtime-only settings such as the device or threads).
        nested: dict-valued fields compared key by key (see :class:`Nested`).
        notes: an explanation added to the error when a field differs (e.g. why an old run
            cannot be continued).
        defaults: values of fields added after a run was recorded: a top-level field missing
            from a config counts as this value (the default that keeps the old behaviour), so
            older runs stay resumable.
    """

    fields: tuple[str, ...] | None = None
    ignore: frozenset[str] = frozenset()
    nested: Mapping[str, Nested] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def differences(self, recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[ConfigDifference]:
        """The compared fields whose values differ (values compared as JSON, so a tuple equals
        a list).

        Args:
            recorded: the config a run recorded (``config.json`` or a checkpoint's copy).
            current: the config of the new run.

        Returns:
            The differences, in field order (empty when the run can be resumed).
        """
        a, b = jsonable({**self.defaults, **recorded}), jsonable({**self.defaults, **current})
        names = self.fields if self.fields is not None else tuple(sorted((set(a) | set(b)) - self.ignore))
        out: list[ConfigDifference] = []
        for name in names:
            spec = self.nested.get(name)
            if spec is None:
                if a.get(name) != b.get(name):
                    out.append(ConfigDifference(name, a.get(name), b.get(name)))
                continue
            da = jsonable({**spec.defaults, **a[name]}) if isinstance(a.get(name), dict) else {}
            db = jsonable({**spec.defaults, **b[name]}) if isinstance(b.get(name), dict) else {}
            keys = spec.keys if spec.keys is not None else tuple(sorted(set(da) | set(db)))
            out.extend(ConfigDifference(f"{spec.label}{k}", da.get(k), db.get(k))
                       for k in keys if da.get(k) != db.get(k))
        return out

    @staticmethod
    def names(diffs: Sequence[ConfigDifference]) -> str:
        """The differing fields, comma-separated (for one-line errors)."""
        return ", ".join(d.field for d in diffs)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (a JSON round trip: tuples become lists), as ``config.json``
    holds it and ``weights_only`` loading allows."""
    return json.loads(json.dumps(obj))


# ----------------------------------------------------------------------------------------------
# the run directory


@dataclass(frozen=True)
class RunKind:
    """The names of one kind of run, for its files and its messages.

    Attributes:
        noun: what the run is called in messages (``"training run"``).
        placeholder: the directory's name in the docs (``"RUN"``, ``"MODEL"``).
        command: the command that makes one (``"opticsfree train"``).
        resume_file: the resume state's path inside the run (``"resume.pt"``).
    """

    noun: str
    placeholder: str
    command: str
    resume_file: str


class RunDir:
    """A run directory: its config, metrics and checkpoints (see the module docstring).

    Args:
        path: the directory (need not exist yet).
        kind: the kind of run.
    """

    def __init__(self, path: str | Path, kind: RunKind):
        self.path = Path(path)
        self.kind = kind

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, {self.kind.noun!r})"

    @property
    def config_path(self) -> Path:
        """``RUN/config.json``."""
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        """``RUN/metrics.jsonl``."""
        return self.path / METRICS_FILE

    @property
    def resume_path(self) -> Path:
        """The resume state: the state after the last finished epoch."""
        return self.path / self.kind.resume_file

    def checkpoint_path(self, epoch: int) -> Path:
        """``RUN/checkpoints/epoch_NNN.pt``."""
        return self.path / CHECKPOINT_DIR / f"epoch_{int(epoch):03d}.pt"

    @property
    def exists(self) -> bool:
        """True when the directory holds a run (it has a ``config.json``)."""
        return self.config_path.is_file()

    # ---- starting and resuming ---------------------------------------------------------------
    def check_path(self) -> None:
        """Check that the directory can be written, before any work starts.

        Raises:
            ConfigError: the path (or a parent of it) is a file; the message names ``--out``.
        """
        check_out_dir(self.path, f"a {self.kind.placeholder} directory (to write the {self.kind.noun} in)")

    def begin(self, resume: bool) -> bool:
        """Check that a run may start here (or continue, with ``resume``), before any work.

        Args:
            resume: the user asked to continue the run in this directory.

        Returns:
            True when an existing run is to be continued (``resume`` and a ``config.json``);
            its config is then checked with :meth:`check_resume`.

        Raises:
            ConfigError: the path is a file; a run is there but ``resume`` is off; or the
                directory holds other files (anything not hidden) but no run.
        """
        self.check_path()
        if self.exists:
            if not resume:
                raise ConfigError(f"{self.path}: already holds a {self.kind.noun}; pass --resume to continue "
                                  f"it or choose another --out")
            return True
        if self.path.is_dir() and any(not p.name.startswith(".") for p in self.path.iterdir()):
            raise ConfigError(f"{self.path}: exists and is not a {self.kind.noun} directory (no {CONFIG_FILE}); "
                              f"choose another --out")
        return False

    def check_resume(self, config: Mapping[str, Any], check: ResumeCheck) -> dict[str, Any]:
        """Check that ``config`` continues the recorded run.

        Args:
            config: the new run's config.
            check: which fields must agree.

        Returns:
            The recorded config.

        Raises:
            ConfigError: a compared field differs; the one-line message names every such field
                and its recorded value, and ends with the check's notes on those fields (else
                with "use the original options or another --out").
        """
        recorded = self.read_config()
        diffs = check.differences(recorded, config)
        if diffs:
            values = ", ".join(f"{d.field}={_short(d.recorded)}" for d in diffs)
            notes = [check.notes[d.field] for d in diffs if d.field in check.notes]
            advice = "; ".join(notes) or "use the original options or another --out"
            raise ConfigError(f"{self.path}: cannot resume with a different config (differs in "
                              f"{check.names(diffs)}); recorded: {values}; {advice}")
        return recorded

    def require(self) -> "RunDir":
        """This run directory, checked to hold a run.

        Returns:
            ``self``.

        Raises:
            DataError: no ``config.json`` (names the command that makes one).
        """
        if not self.exists:
            raise DataError(f"{self.path}: not a {self.kind.noun} (no {CONFIG_FILE}); make one with "
                            f"`{self.kind.command}`")
        return self

    # ---- config.json -------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The recorded config.

        Raises:
            DataError: no run here, or ``config.json`` is not a JSON object.
        """
        config = read_json(self.require().config_path)
        if not isinstance(config, dict):
            raise DataError(f"{self.config_path}: expected a JSON object, got {type(config).__name__}")
        return config

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Atomically write ``config.json`` (creating the directory)."""
        ensure_dir(self.path)
        write_json(self.config_path, jsonable(dict(config)))

    # ---- metrics.jsonl -----------------------------------------------------------------------
    def read_metrics(self, upto: int | None = None) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (none when it is missing).

        Args:
            upto: keep only rows whose ``epoch`` is at most this (None: all).

        Raises:
            DataError: a complete line is not a JSON object (names the file and line).
        """
        rows = read_metrics_file(self.metrics_path)
        return [row for row in rows if upto is None or int(row.get("epoch", 0)) <= upto]

    def truncate_metrics(self, upto: int) -> list[dict[str, Any]]:
        """Keep the rows up to epoch ``upto`` (those of the epochs a resume keeps) and drop the rest;
        writes the file (empty when nothing is kept).

        Returns:
            The rows kept.
        """
        kept = [(line, row) for line, row in _jsonl_lines(self.metrics_path) if int(row.get("epoch", 0)) <= upto]
        write_text(self.metrics_path, "".join(line + "\n" for line, _ in kept))
        return [row for _, row in kept]

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's row (the whole file is rewritten atomically)."""
        lines = [line for line, _ in _jsonl_lines(self.metrics_path)]
        write_text(self.metrics_path, "".join(line + "\n" for line in [*lines, json.dumps(dict(row))]))

    # ---- checkpoints -------------------------------------------------------------------------
    def list_checkpoints(self) -> list[int]:
        """Epochs that have a checkpoint in ``RUN/checkpoints``, ascending.

        Raises:
            DataError: the directory holds no run.
        """
        d = self.require().path / CHECKPOINT_DIR
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for f in d.iterdir() if (m := _EPOCH_RE.match(f.name)))


def _jsonl_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row) of every complete line of a JSON-lines file (none when it is missing); an
    unterminated last line, left by a writer that was stopped, is ignored."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # after the last newline: unterminated
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {i} is not a JSON object")
        out.append((line, row))
    return out


def read_metrics_file(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file, wherever it is (:meth:`RunDir.read_metrics` for a
    run's own): none when it is missing, an unterminated last line ignored.

    Raises:
        DataError: a complete line is not a JSON object (names the file and line).
    """
    return [row for _, row in _jsonl_lines(Path(path))]


def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Atomically save a checkpoint dict, every tensor detached, on the CPU and contiguous."""
    save_torch(path, _to_cpu(dict(state)))


def _to_cpu(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().contiguous()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def load_state(path: str | Path, required: Sequence[str] = (), what: str = "opticsfree checkpoint") -> dict[str, Any]:
    """Safely load a checkpoint (``weights_only``) and check that it has the ``required`` keys.

    Raises:
        OpticsfreeError: the file is missing or unreadable.
        DataError: not a dict with the required keys (names the file, ``what`` it should be and
            the keys).
    """
    state = load_torch(path)
    if not isinstance(state, dict) or any(k not in state for k in required):
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise DataError(f"{path}: not an {what} (keys {have}, expected {', '.join(required)})")
    return state


def capture_rng(device: "torch.device | None" = None,
                generators: Mapping[str, "torch.Generator"] | None = None) -> dict[str, Any]:
    """The random-number state to store in a checkpoint.

    Args:
        device: a CUDA device adds its generator's state (``"cuda"``).
        generators: further generators by name (not ``"torch"`` or ``"cuda"``).

    Returns:
        ``{"torch": ByteTensor, [name: ByteTensor, ...], ["cuda": ByteTensor]}``.
    """
    import torch

    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    for name, g in (generators or {}).items():
        if name in ("torch", "cuda"):
            raise ValueError(f"generator name {name!r} is reserved")
        rng[name] = g.get_state()
    if device is not None and device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def restore_rng(saved: Mapping[str, Any], device: "torch.device | None" = None,
                generators: Mapping[str, "torch.Generator"] | None = None, source: str = "checkpoint") -> None:
    """Restore what :func:`capture_rng` stored (the CUDA state only onto a CUDA ``device``).

    Raises:
        DataError: a generator's state is missing (names ``source`` and the generator).
    """
    import torch

    missing = [k for k in ("torch", *(generators or {})) if k not in saved]
    if missing:
        raise DataError(f"{source}: no random-number state for {', '.join(missing)}")
    torch.set_rng_state(saved["torch"])
    for name, g in (generators or {}).items():
        g.set_state(saved[name])
    if "cuda" in saved and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda"], device)
