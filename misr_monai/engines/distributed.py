# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Which handlers each process of a distributed run attaches (chosen by what they are, not by their place in a list),
and the end of a distributed run's process group."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ignite.handlers import ProgressBar
from monai.handlers import CheckpointSaver, MLFlowHandler, StatsHandler, TensorBoardImageHandler, TensorBoardStatsHandler

from misr_monai.engines.checkpoint import KeepLatestCheckpoints
from misr_monai.engines.finish import WeightsReport

__all__ = ["RANK_ZERO_HANDLERS", "end_process_group", "handlers_for_rank"]

RANK_ZERO_HANDLERS = (ProgressBar, StatsHandler, TensorBoardStatsHandler, TensorBoardImageHandler, MLFlowHandler,
                      CheckpointSaver, KeepLatestCheckpoints, WeightsReport)
"""Handlers that report or write files: only the first process runs them, so that logs and checkpoints are written
once. Every other handler (data timing, reseeding, LR schedule, validation, checkpoint loading) runs on every rank."""


def handlers_for_rank(handlers: Sequence, rank: int, rank_zero: tuple = RANK_ZERO_HANDLERS) -> list:
    """The ``handlers`` that process ``rank`` attaches: all of them on rank 0, elsewhere those not of ``rank_zero``'s
    types (``multi_gpu_train.json``'s ``train#trainer#train_handlers`` and checkpoint handlers).

    Example::

        >>> from monai.handlers import LrScheduleHandler
        >>> import torch
        >>> lr = LrScheduleHandler(torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1)], 0.1), 1))
        >>> [type(h).__name__ for h in handlers_for_rank([lr, StatsHandler()], rank=1)]
        ['LrScheduleHandler']
    """
    return list(handlers) if rank == 0 else [h for h in handlers if not isinstance(h, rank_zero)]


def end_process_group() -> None:
    """End a distributed run on every rank, while the interpreter is whole: release what each live
    ``DistributedDataParallel`` holds of the process group (its reducer keeps the last step's gloo/NCCL work and a
    reference to the group; its logger keeps the reducer), then ``barrier`` and ``destroy_process_group`` (PyTorch's
    documented end). Left to interpreter exit, that work was freed after the interpreter had gone, and about one
    two-process gloo run in 25 aborted after both ranks had saved their weights ("terminate called without an active
    exception"; pytorch/pytorch#179291). Every bundle's ``multi_gpu_*.json`` ``finalize``; a no-op outside a
    distributed run. The modules keep their weights; they cannot train again in this process.
    """
    for obj in gc.get_objects():
        if isinstance(obj, DistributedDataParallel):
            for name in ("logger", "reducer"):
                obj.__dict__.pop(name, None)
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
