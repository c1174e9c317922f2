"""Benchmark: CycleGAN training steps per second at 32x32 (images/s, one image = one image of each domain).

Times ``CycleGANMethod.train_step`` (one generator and one discriminator update) on random
32x32 RGB batches for several option sets, measured round-robin (one timed block of every set,
then the next block of every set, ...) so that the load of other jobs on a shared machine hits
all sets alike. The unit is the training loop's: images of one domain per second, what
``reconstruct train`` writes as ``images_per_s`` in metrics.jsonl.

An option set is ``key=value`` pairs joined by commas, e.g.
``width=32,n_blocks=6,d_width=64,batch_size=4``: any ``cyclegan`` option (``--set``), plus

* ``step=fused`` (the method's step, default) or ``step=reference`` (one network call per image
  set, the textbook formulas, as before the fused step),
* ``amp=bf16`` (default where the CPU has native bf16) or ``amp=fp32``,
* ``channels_last=1`` (default 0),
* ``label=NAME``.

Without sets it compares the former defaults on the former step, the former defaults on the
fused step and the current defaults (``CycleGANConfig()``), all front_end-style residual
generators as ``configs/seed.toml`` trains them.

Usage:
    .venv/bin/python bench/bench_cyclegan.py [--threads 2] [--steps 10] [--rounds 3] [SET ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time

import torch

from opticsfree.reconstruction.cyclegan import CycleGANConfig, CycleGANMethod, reference_train_step
from opticsfree.utils.runtime import cpu_has_bf16

#: The option sets compared without arguments.
DEFAULT_SETS = (
    "label=former defaults + former step,width=32,n_blocks=6,d_width=64,batch_size=4,residual=true,step=reference",
    "label=former defaults + fused step,width=32,n_blocks=6,d_width=64,batch_size=4,residual=true",
    "label=current defaults,residual=true",
)
BENCH_KEYS = ("step", "amp", "channels_last", "label")


def parse_set(text: str) -> dict:
    """``key=value,...`` -> dict; values parsed as JSON where they are JSON (``4``, ``true``)."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SystemExit(f"bad option {part!r} in set {text!r} (key=value)")
        k, v = part.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


class Arm:
    """One option set: a CycleGANMethod, its batches and its step function."""

    def __init__(self, spec: dict, size: int, seed: int):
        spec = dict(spec)
        self.step_kind = spec.pop("step", "fused")
        amp = spec.pop("amp", "bf16" if cpu_has_bf16() else "fp32")
        self.channels_last = bool(spec.pop("channels_last", 0))
        opts = {k: v for k, v in spec.items() if k != "label"}
        self.cfg = CycleGANConfig.model_validate(opts)
        self.label = spec.get("label") or ",".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
        self.amp_name = amp
        self.amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext
        g = torch.Generator().manual_seed(seed)
        self.m = CycleGANMethod(self.cfg, 3, 3, size, torch.device("cpu"), g)
        bs = self.cfg.batch_size
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.channels_last:
            for net in self.m.networks().values():
                net.to(memory_format=torch.channels_last)
        self.a = (torch.rand(bs, 3, size, size, generator=g) * 2 - 1).contiguous(memory_format=fmt)
        self.b = (torch.rand(bs, 3, size, size, generator=g) * 2 - 1).contiguous(memory_format=fmt)
        self.rates: list[float] = []

    def step(self) -> None:
        if self.step_kind == "reference":
            reference_train_step(self.m, self.a, self.b, self.amp)
        else:
            self.m.train_step(self.a, self.b, self.amp)

    def time_block(self, steps: int) -> None:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.rates.append(steps * self.cfg.batch_size / (time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", help="option sets (key=value,...); default: former vs current defaults")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="timed blocks per set (round-robin)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per set first")
    ap.add_argument("--size", type=int, default=32, help="image side")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    arms = [Arm(parse_set(s), args.size, args.seed) for s in (args.sets or DEFAULT_SETS)]
    for arm in arms:
        for _ in range(args.warmup):
            arm.step()
    for _ in range(args.rounds):
        for arm in arms:
            arm.time_block(args.steps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# CycleGAN train_step, {args.size}x{args.size} RGB, {args.threads} thread(s), torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, load average {load:.1f}; "
          f"median (min-max) of {args.rounds} blocks of {args.steps} steps")
    print("| set | batch | amp | channels_last | step | images/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for arm in arms:
        med = statistics.median(arm.rates)
        base = base or med
        print(f"| {arm.label} | {arm.cfg.batch_size} | {arm.amp_name} | {int(arm.channels_last)} | "
              f"{arm.step_kind} | {med:.1f} ({min(arm.rates):.1f}-{max(arm.rates):.1f}); {med / base:.1f}x |")


if __name__ == "__main__":
    main()
