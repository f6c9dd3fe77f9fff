# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .fast_ddim import FAST_DDPM_TIMESTEPS, FastDDIMScheduler

__all__ = ["FAST_DDPM_TIMESTEPS", "FastDDIMScheduler"]
