"""The one place the inference package reaches a trained model.

Everything else in :mod:`opticsfree.inference` uses a trained model only through the one
trained-model contract, :class:`opticsfree.evaluation.contract.TrainedEmbedder` (which
:class:`opticsfree.training.TrainedModel` satisfies: ``embed``, ``logits``, ``classes``,
``config``, ``epoch``, ``size``, ``captures``, ``has_head``, ``load_split``, ``mirror``, and
``model`` for export). :func:`open_model` is the single function that builds one from a run
directory.
"""

from __future__ import annotations

from pathlib import Path

from opticsfree.errors import ConfigError, DataError
from opticsfree.evaluation.contract import TrainedEmbedder

#: ``--checkpoint`` names besides an epoch number.
CHECKPOINT_NAMES = ("last", "best")


def resolve_checkpoint(run: str | Path, checkpoint: str | int | None = "last") -> int:
    """The epoch that ``--checkpoint`` names.

    Args:
        run: the run directory.
        checkpoint: ``"last"`` (or None), ``"best"`` (the checkpointed epoch of highest
            validation accuracy in ``metrics.jsonl``, the earlier one among ties, as ``train``
            reports it) or an epoch number (int or digits).

    Raises:
        DataError: not a run, no checkpoint, an epoch without a checkpoint, or ``best`` for a
            run that recorded no validation accuracy.
        ConfigError: a value that is none of these.
    """
    from opticsfree.training import list_checkpoints

    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: run directory not found")
    epochs = list_checkpoints(run)
    if not epochs:
        raise DataError(f"{run}: no checkpoint yet (RUN/checkpoints/epoch_NNN.pt)")
    spec = "last" if checkpoint is None else str(checkpoint).strip().lower()
    if spec == "last":
        return epochs[-1]
    if spec == "best":
        from opticsfree.training.trainer import summarize

        best = summarize(run)["best_epoch"]
        if best is None:
            raise DataError(f"{run}: --checkpoint best needs the validation accuracy of a "
                            "checkpointed epoch in metrics.jsonl (the run has none); use last "
                            f"or an epoch ({', '.join(map(str, epochs))})")
        return int(best)
    if not spec.isdigit():
        raise ConfigError(f"--checkpoint {checkpoint}: expected best, last or an epoch number")
    epoch = int(spec)
    if epoch not in epochs:
        raise DataError(f"{run}: no checkpoint for epoch {epoch} "
                        f"(have {', '.join(map(str, epochs))})")
    return epoch


def open_model(run: str | Path, epoch: int, device: str = "cpu", mirror: bool = False) -> TrainedEmbedder:
    """Load the model of ``run`` at checkpoint ``epoch`` for inference (eval mode; on the CPU in
    the channels_last memory format).

    Args:
        run: the run directory.
        epoch: a checkpointed epoch.
        device: ``cpu`` or ``cuda``.
        mirror: test-time mirroring (:func:`opticsfree.training.load_trained`), after
            :func:`~opticsfree.training.checkpoint.check_mirror` found the run's camera
            left-right symmetric.

    Raises:
        DataError: not a run, an unknown epoch, or an unreadable checkpoint.
        ConfigError: ``mirror`` for a camera that is not left-right symmetric.
    """
    from opticsfree.training import load_trained
    from opticsfree.training.checkpoint import check_mirror

    model = load_trained(run, epoch, device=device, mirror=mirror)
    if mirror:
        check_mirror(model.captures, model.size, model.model.norms["lensless"].channels)
    return for_inference(model, device)


def for_inference(model: TrainedEmbedder, device: str = "cpu") -> TrainedEmbedder:
    """Put a loaded model in its fastest inference layout: on the CPU, channels_last (measured
    1.5x faster ``cnn4`` inference on the 2-core CPU; the embeddings differ from the default
    layout's by ~1e-7). Only training's fp32 backward pass is unsafe in that layout on the CPU
    (see ``TrainConfig.resolved_channels_last``)."""
    if device == "cpu":
        import torch

        model.model.to(memory_format=torch.channels_last)
        model.model.channels_last = True
    return model


def checkpoint_file(run: str | Path, epoch: int) -> Path:
    """The checkpoint file of ``epoch`` (for cache keys)."""
    from opticsfree.training.checkpoint import training_run

    return training_run(run).checkpoint_path(epoch)
