# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Does the data pipeline keep up? The share of a trainer's iteration time spent waiting for the next batch."""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

__all__ = ["DataWaitHandler"]


class DataWaitHandler:
    """Time each iteration of an Ignite engine and the part of it spent fetching the batch (``GET_BATCH_*`` events).

    At each epoch's end, ``engine.state.metrics`` gets ``data_wait_share`` (waiting / iteration time) and
    ``iterations_per_s`` over that epoch's iterations, which ``StatsHandler`` and ``TensorBoardStatsHandler`` log;
    validation run by other handlers at the epoch's end is not counted.

    Args:
        logger_name: where the figures are also logged. Defaults to ``"DataWaitHandler"``.
    """

    def __init__(self, logger_name: str = "DataWaitHandler") -> None:
        self.logger = logging.getLogger(logger_name)
        self._reset(None)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _reset(self, engine: Engine | None) -> None:
        self.waiting = self.total = 0.0
        self.iterations = 0

    def _batch_started(self, engine: Engine) -> None:
        self.started = time.perf_counter()

    def _batch_completed(self, engine: Engine) -> None:
        self.waiting += time.perf_counter() - self.started

    def _iteration_completed(self, engine: Engine) -> None:
        self.total += time.perf_counter() - self.started
        self.iterations += 1

    def _epoch_completed(self, engine: Engine) -> None:
        if not self.iterations:
            return
        share, rate = self.waiting / self.total, self.iterations / self.total
        engine.state.metrics.update(data_wait_share=share, iterations_per_s=rate)
        self.logger.info(f"epoch {engine.state.epoch}: {rate:.2f} iterations/s, {100 * share:.1f}% waiting for data")
