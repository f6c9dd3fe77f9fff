# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Resumable training around MONAI's ``CheckpointSaver``/``CheckpointLoader``: write checkpoints atomically, find the
newest one, keep a bounded number of them across resumes, and record the versions that wrote them."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from misr_monai.io import atomic_write

__all__ = ["AtomicCheckpointSaver", "latest_checkpoint", "KeepLatestCheckpoints", "VersionStamp", "versions"]

_NUMBER = re.compile(r"=(\d+)\.pt$")


def _numbered(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    found = (p for p in folder.glob(pattern) if not p.name.startswith("."))  # not a writer's temporary file
    return sorted((int(m.group(1)), p) for p in found if (m := _NUMBER.search(p.name)))


class _AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` through :py:func:`misr_monai.io.atomic_write`; a fixed file name (``model.pt``) is
    replaced in one step, never deleted before its successor is whole."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint, filename: str, metadata=None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)

    def _save_func(self, checkpoint, path, func) -> None:
        atomic_write(path, lambda tmp: func(checkpoint, tmp, **self.kwargs))


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (same arguments), writing every file atomically.

    MONAI's saver writes in place (``DiskSaver(atomic=False)``) and deletes the previous ``model.pt`` before writing
    the next, so a run killed while saving leaves a truncated checkpoint that the next resume fails to load, or no
    weights at all. Here each file is written to a temporary file and renamed over its predecessor.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, checkpoint.save_handler.filename)

    def state_dict(self) -> dict:
        """The key metric's best score and file: put this saver in the training checkpoint's ``save_dict`` and
        ``load_dict``, so that a resumed run replaces ``model.pt`` only with better weights (a new process would
        otherwise save at its first validation)."""
        return {} if self._key_metric_checkpoint is None else dict(self._key_metric_checkpoint.state_dict())

    def load_state_dict(self, state: dict) -> None:
        if self._key_metric_checkpoint is not None and state:
            self._key_metric_checkpoint.load_state_dict(state)


def latest_checkpoint(folder: str | os.PathLike, pattern: str = "*checkpoint_epoch=*.pt") -> str | None:
    """The checkpoint in ``folder`` matching ``pattern`` with the highest epoch (or iteration) number, else None.

    Bundle configs use it to resume: ``CheckpointLoader`` is enabled only when it finds a file.

    Example::

        >>> latest_checkpoint("/nonexistent") is None
        True
    """
    folder = Path(folder)
    found = _numbered(folder, pattern) if folder.is_dir() else []
    return str(found[-1][1]) if found else None


class KeepLatestCheckpoints:
    """After each epoch, delete all but the ``n_saved`` newest checkpoints matching ``pattern`` in ``save_dir``.

    MONAI's ``CheckpointSaver`` bounds only the files written by its own process, so each resume would leave one more
    behind; attach this after it.

    Args:
        save_dir: the saver's folder.
        n_saved: checkpoints to keep. Defaults to 2.
        pattern: the saver's file names. Defaults to ``"*checkpoint_epoch=*.pt"``.
    """

    def __init__(self, save_dir: str | os.PathLike, n_saved: int = 2, pattern: str = "*checkpoint_epoch=*.pt") -> None:
        self.save_dir, self.n_saved, self.pattern = Path(save_dir), n_saved, pattern

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        for _, path in _numbered(self.save_dir, self.pattern)[: -self.n_saved]:
            path.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    """The ``misr_monai``, MONAI and torch versions of this process."""
    import monai
    import torch

    import misr_monai

    return {"misr_monai": str(misr_monai.__version__), "monai": str(monai.__version__), "torch": str(torch.__version__)}


class VersionStamp:
    """An entry for a checkpoint's ``save_dict``/``load_dict`` that records :py:func:`versions` and, when a checkpoint
    from other versions is loaded, says so in one warning line (the run continues)."""

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}

    def state_dict(self) -> dict[str, str]:
        return versions()

    def load_state_dict(self, state: dict[str, str]) -> None:
        self.loaded = dict(state)
        now = versions()
        changed = [f"{k} {state.get(k, '?')} (now {v})" for k, v in now.items() if state.get(k) != v]
        if changed:
            logging.getLogger("misr_monai").warning(f"checkpoint written by other versions: {', '.join(changed)}.")
