# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Find the newest resumable checkpoint written by MONAI's ``CheckpointSaver``."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["latest_checkpoint"]

_NUMBER = re.compile(r"=(\d+)\.pt$")


def latest_checkpoint(folder: str | os.PathLike, pattern: str = "*checkpoint_epoch=*.pt") -> str | None:
    """The checkpoint in ``folder`` matching ``pattern`` with the highest epoch (or iteration) number, else None.

    Bundle configs use it to resume: ``CheckpointLoader`` is enabled only when it finds a file.

    Example::

        >>> latest_checkpoint("/nonexistent") is None
        True
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.glob(pattern) if (m := _NUMBER.search(p.name))]
    return str(max(found)[1]) if found else None
