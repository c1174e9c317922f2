"""Multi-process training with torchrun and DistributedDataParallel (gloo on CPU, nccl on GPU).

Launch with the command line, which detects the torchrun environment::

    torchrun --standalone --nproc_per_node 2 -m opticsfree.cli.main train CAPTURES --loss triplet --out RUN

(a library module never imports :mod:`opticsfree.cli`, so this module has no entry point of its
own; running it with ``-m`` says which command to use). Every process draws the same *global*
class-balanced batch and embeds its own slice; the slices' embeddings are gathered so that
mining and the loss see the whole global batch, exactly as a single process would. Each process
back-propagates :math:`W \\cdot L` through its own slice (the other slices are constants), and
DDP averages the gradients over the :math:`W` processes, which gives :math:`\\sum_r \\partial L / \\partial
\\theta|_r = \\partial L / \\partial \\theta`: the single-process gradient. Batch-norm
statistics are synchronised across processes (``SyncBatchNorm`` on GPU; :class:`SyncBatchNormCPU`
on CPU, where PyTorch's has no implementation), so the forward pass matches too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) run.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        group: the process group used for embedding gathers and batch-norm sync (separate from
            DDP's default group, so their collectives never interleave); None when single.
        owns_group: whether :func:`init_distributed` created the default group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when there is one (gloo for cpu, nccl for cuda)."""
    world = torchrun_world_size()
    if world <= 1:
        return DistInfo()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        owns = True
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    group = dist.new_group(backend="nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(local)
    return DistInfo(rank, dist.get_world_size(), local, group, owns)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when single)."""
    if info.enabled:
        dist.barrier(group=info.group)


def gather_batch(t: Tensor | None, info: DistInfo) -> Tensor | None:
    """Concatenate every process's slice in rank order; only the local slice keeps its gradient.

    Args:
        t: this process's (b, ...) tensor (equal b on every process), or None.
        info: the process group.

    Returns:
        (W b, ...) tensor, or ``t`` itself when single.
    """
    if t is None or not info.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t.detach().contiguous(), group=info.group)
    parts[info.rank] = t
    return torch.cat(parts)


class SyncBatchNormCPU(nn.BatchNorm2d):
    """Batch norm whose training statistics are summed over all processes (any device).

    The per-channel sums :math:`\\sum x`, :math:`\\sum x^2` and the count are all-reduced with
    an autograd-aware collective, so gradients also flow through the global statistics; the
    running statistics are updated exactly as :class:`torch.nn.BatchNorm2d` does with the
    global batch (unbiased variance). Outside training or a process group it is plain batch
    norm. The state dict is that of :class:`~torch.nn.BatchNorm2d`.
    """

    group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and self.group is not None):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        x32 = x.float()
        c = x32.shape[1]
        n_local = x32.numel() // c
        stats = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3)),
                           x32.new_tensor([float(n_local)])])
        stats = all_reduce(stats, group=self.group)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - mom).add_(mean.detach(), alpha=mom)
                self.running_var.mul_(1 - mom).add_(unbiased.detach(), alpha=mom)
        y = (x32 - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, info: DistInfo, device: str) -> nn.Module:
    """Replace the BatchNorm2d layers of ``module`` by synchronised ones (in place on CPU)."""
    if not info.enabled:
        return module
    if device == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group=info.group)
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncBatchNormCPU
            m.group = info.group
    return module


#: What ``python -m opticsfree.training.distributed`` (the former entry point) prints.
LAUNCH_HINT = ("error: opticsfree.training.distributed is a library module; launch DDP training "
               "with `torchrun --standalone --nproc_per_node N -m opticsfree.cli.main train CAPTURES "
               "--loss LOSS --out RUN ...`")


if __name__ == "__main__":
    sys.stderr.write(LAUNCH_HINT + "\n")
    sys.exit(2)
