# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .checkpoint import latest_checkpoint

__all__ = ["latest_checkpoint"]
