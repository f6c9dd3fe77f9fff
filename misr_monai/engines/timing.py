# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Does the data pipeline keep up? The share of a trainer's iteration time spent waiting for the next batch."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from ignite.handlers import Timer

__all__ = ["DataWaitHandler"]


class DataWaitHandler:
    """Two Ignite ``Timer``s per epoch: the iterations (batch fetch to iteration end) and, within them, the batch
    fetches (``GET_BATCH_*`` events).

    At each epoch's end, ``engine.state.metrics`` gets ``data_wait_share`` (fetching / iteration time) and
    ``iterations_per_s``, which ``StatsHandler`` and ``TensorBoardStatsHandler`` log; validation run by other handlers
    at the epoch's end is not counted.

    Args:
        logger_name: where the figures are also logged. Defaults to ``"DataWaitHandler"``.
    """

    def __init__(self, logger_name: str = "DataWaitHandler") -> None:
        self.logger = logging.getLogger(logger_name)
        self.waiting = Timer()
        self.iterations = Timer()

    def attach(self, engine: Engine) -> None:
        self.waiting.attach(engine, start=Events.EPOCH_STARTED, resume=Events.GET_BATCH_STARTED,
                            pause=Events.GET_BATCH_COMPLETED)
        self.iterations.attach(engine, start=Events.EPOCH_STARTED, resume=Events.GET_BATCH_STARTED,
                               pause=Events.ITERATION_COMPLETED, step=Events.ITERATION_COMPLETED)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_completed(self, engine: Engine) -> None:
        total = self.iterations.value()
        if not self.iterations.step_count or total <= 0:
            return
        share, rate = self.waiting.value() / total, self.iterations.step_count / total
        engine.state.metrics.update(data_wait_share=share, iterations_per_s=rate)
        self.logger.info(f"epoch {engine.state.epoch}: {rate:.2f} iterations/s, {100 * share:.1f}% waiting for data")
