# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""How a training run ends: it validates at its end whatever its validation interval, says where its weights went,
and a Ctrl-C stops it in one line with the last checkpoint kept."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from ignite.engine import Engine, Events

from misr_monai.engines.checkpoint import latest_checkpoint

__all__ = ["FinalValidation", "WeightsReport", "run_training"]


class FinalValidation:
    """Run ``validator`` when training ends (its last epoch, or a time limit mid-epoch) unless the last epoch was
    validated already: a run of fewer epochs than ``interval`` still validates, so its best-model saver writes.
    Not after a Ctrl-C (:py:func:`run_training`).

    Args:
        validator: the evaluator of ``ValidationHandler``.
        interval: its epoch interval.

    Example::

        "train#handlers": [..., {"_target_": "misr_monai.engines.FinalValidation", "validator": "@validate#evaluator",
                                 "interval": "@val_interval"}]
    """

    def __init__(self, validator: Engine, interval: int = 1) -> None:
        self.validator, self.interval = validator, max(1, int(interval))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        state = engine.state
        whole_epoch = state.epoch_length is None or state.iteration % state.epoch_length == 0
        if getattr(engine, "interrupted", False) or state.iteration == 0:
            return
        if whole_epoch and state.epoch % self.interval == 0:
            return  # ValidationHandler validated this epoch
        self.validator.run(state.epoch)


class WeightsReport:
    """Say, when training ends, whether the weights file at ``path`` (the bundle's ``models/model.pt``) was written by
    this run or is unchanged (with a shipped file: the shipped weights), in one line.

    Args:
        path: the file the run's best (or final) model is saved to.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.before: tuple | None = None

    def _stamp(self) -> tuple | None:
        return (self.path.stat().st_mtime_ns, self.path.stat().st_size) if self.path.is_file() else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)

    def _started(self, engine: Engine) -> None:
        """Note the file, and say at the end after every other handler (a saver of the final model included)."""
        self.before = self._stamp()
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        after = self._stamp()
        if after is None:
            line = f"{self.path}: not written (no validation ran); the last checkpoint holds the training state"
        elif after == self.before:
            line = f"{self.path}: unchanged by this run (no validation improved on the weights it saved before)"
        else:
            line = f"{self.path}: written by this run (epoch {engine.state.epoch}, iteration {engine.state.iteration})"
        print(line, flush=True)


def run_training(trainer: Engine, checkpoint_dir: str | os.PathLike) -> None:
    """``trainer.run()``, where Ctrl-C stops training after the current iteration (no final validation) and exits
    with one line naming the last checkpoint kept in ``checkpoint_dir`` (code 130); a second Ctrl-C stops at once,
    with the same line."""
    def interrupted() -> None:
        last = latest_checkpoint(checkpoint_dir)
        kept = f"the last checkpoint, {last}, is kept: run the same command to resume" if last else "no checkpoint yet"
        print(f"\ninterrupted at epoch {trainer.state.epoch}, iteration {trainer.state.iteration}; {kept}.",
              file=sys.stderr, flush=True)  # below the progress bar
        raise SystemExit(130)

    def stop(signum, frame) -> None:
        if getattr(trainer, "interrupted", False):
            interrupted()
        trainer.interrupted = True
        trainer.terminate()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        trainer.run()
    except KeyboardInterrupt:
        interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)
    if getattr(trainer, "interrupted", False):
        interrupted()
