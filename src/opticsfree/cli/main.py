"""The ``opticsfree`` command: every sub-command registers itself on the shared app."""

from opticsfree.cli.common import app
from opticsfree.cli import camera as _camera  # noqa: F401  simulate, quality, show
from opticsfree.cli import sets as _sets  # noqa: F401  check, import, tuples
from opticsfree.cli import train as _train  # noqa: F401  train
from opticsfree.cli import evaluate as _evaluate  # noqa: F401  evaluate
from opticsfree.cli import bayes as _bayes  # noqa: F401  bayes
from opticsfree.cli import inference as _inference  # noqa: F401  predict, export
from opticsfree.cli import reconstruct as _reconstruct  # noqa: F401  reconstruct train|apply, calibrate
from opticsfree.cli import design as _design  # noqa: F401  camera info|fit|sweep
from opticsfree.cli import tune as _tune  # noqa: F401  tune (search training settings)
from opticsfree.cli import run as _run  # noqa: F401  run (the whole study)
from opticsfree.cli import rig as _rig  # noqa: F401  rig capture|calibrate|preview|report, live

__all__ = ["app"]

if __name__ == "__main__":
    app()
