# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Per-epoch seeding, so that a run resumed from an epoch checkpoint sees the same data as an uninterrupted one."""

from __future__ import annotations

import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import set_determinism

__all__ = ["EpochSeedHandler"]


class EpochSeedHandler:
    """At each epoch's start, seed Python, NumPy and torch (MONAI's ``set_determinism``) and the dataset's random
    transforms from ``(seed, epoch, rank)``, then restart the data iterator.

    A run resumed from the checkpoint of epoch e then draws epoch e + 1 exactly as an uninterrupted run does: the
    shuffle, the worker seeds, the random crops and flips, and any noise the iteration draws (diffusion timesteps).
    Without it, the random state after a resume depends on how long the previous process ran, and an iterator left
    half-used at an epoch's end (``epoch_length`` shorter than the loader) would continue in one run but not the other.

    Args:
        seed: the run's seed. Defaults to 0.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        seed = (self.seed + 1_000_003 * rank + engine.state.epoch) % 2**32
        set_determinism(seed)
        dataset = getattr(engine.state.dataloader, "dataset", None)
        if dataset is not None:
            set_rnd(dataset, seed)  # with num_workers=0 the transforms draw from their own states
        engine.set_data(engine.state.dataloader)
